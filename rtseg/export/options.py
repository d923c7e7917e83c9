"""The one model of what ``rtseg export`` takes: :class:`ExportOptions`.

Each field carries its command-line flag, help, recipe key (``[table] key`` in ``export/*.toml``), how a value is
read (from a flag's text or any TOML value) and range-checked, and how it is written back as text. The argument
parser, the recipe reader and the manifest's rebuild command are all derived from these fields, so they cannot
drift apart: ``rebuild_command()`` lists every option that differs from its default and reproduces the bundle.

Nothing heavy is imported here (``rtseg export --help`` builds its parser from this module).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import RtsegError
from ..sizes import read_range, read_size

MAX_CLASSES = 65535
MAX_CALIB_FRAMES = 1000


# -- readers: text from a flag or a TOML value -> checked value; each also accepts its own output ----------------
# (sizes and size ranges: rtseg.sizes, shared with every other command)
def _reader_number(kind, low=None, high=None, low_open=False, example=""):
    """A reader of one int or float in [low, high] (``low_open``: low itself excluded), NaN and inf refused."""
    word = "a whole number" if kind is int else "a number"

    def read(value, flag: str):
        if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise RtsegError(f"{flag} {value!r}: expected {word}{example}")
        try:
            number = kind(value)
        except (TypeError, ValueError, OverflowError):
            raise RtsegError(f"{flag} {value!r}: expected {word}{example}") from None
        if not math.isfinite(number) or (low is not None and (number <= low if low_open else number < low)) \
                or (high is not None and number > high):
            lo = "" if low is None else f"{'above' if low_open else 'at least'} {low}"
            hi = "" if high is None else f"at most {high}"
            raise RtsegError(f"{flag} {value!r}: must be {' and '.join(p for p in (lo, hi) if p)}{example}")
        return number

    return read


def _reader_triple(nonzero: bool):
    def read(value, flag: str) -> tuple[float, float, float]:
        values = value if isinstance(value, (list, tuple)) else str(value).split(",")
        try:
            out = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            raise RtsegError(f"{flag} {value!r}: expected three numbers, e.g. 0.485,0.456,0.406") from None
        if len(out) != 3:
            raise RtsegError(f"{flag} {value!r}: expected three numbers (one per channel)")
        if not all(math.isfinite(v) for v in out):
            raise RtsegError(f"{flag} {value!r}: NaN or infinity would make every input pixel NaN; pass finite"
                             f" numbers")
        if nonzero and any(v <= 0 for v in out):
            raise RtsegError(f"{flag} {value!r}: each std must be above 0 (a zero std divides by zero)")
        return out

    return read


def _reader_choice(*choices: str, upper: bool = False):
    def read(value, flag: str) -> str:
        text = str(value).upper() if upper else str(value)
        if text not in choices:
            raise RtsegError(f"{flag} {value!r}: choose one of {', '.join(choices)}")
        return text

    return read


def _read_text(value, flag: str) -> str:
    if not isinstance(value, (str, Path)) or not str(value).strip():
        raise RtsegError(f"{flag} {value!r}: expected a non-empty text")
    return str(value)


def _read_path(value, flag: str) -> Path:
    return Path(_read_text(value, flag))


def _read_names(value, flag: str) -> tuple[str, ...]:
    """One or more names: a list (a recipe, or a flag given several values) or comma-separated text."""
    items = value if isinstance(value, (list, tuple)) else [value]
    names = tuple(n.strip() for item in items for n in _read_text(item, flag).split(",") if n.strip())
    if not names:
        raise RtsegError(f"{flag} {value!r}: expected one or more names")
    return names


def _read_switch(value, flag: str) -> bool:
    if not isinstance(value, bool):
        raise RtsegError(f"{flag} {value!r}: expected true or false")
    return value


def _show_size(v) -> str:
    return f"{v[0]}x{v[1]}"


def _show_triple(v) -> str:
    return ",".join(repr(float(x)) for x in v)


def _show_path(v) -> str:
    return str(Path(v).resolve())  # the rebuild command works from any folder


def _show_weights(v) -> str:
    """A file's absolute path; a catalogue name (no folder part, no such file) as it is."""
    return str(v) if Path(v).name == str(v) and not Path(v).exists() else _show_path(v)


def _read_classes(value, flag: str) -> str:
    from ..bundle.classes import check_class_spec

    return check_class_spec(_read_text(value, flag), flag)


def _show_classes(v) -> str:
    return _show_path(v) if "," not in str(v) and Path(v).is_file() else str(v)


@dataclass(frozen=True)
class Flag:
    """How one option appears on the command line and in a recipe."""

    flag: str
    group: str  # the --help section: source, input, output, verification and build
    help: str
    read: Callable[[Any, str], Any] = _read_text
    show: Callable[[Any], str] = str
    recipe: tuple[str, str] | None = None  # (table, key) in export/*.toml
    metavar: str | None = None
    switch: bool = False  # a flag without a value (store_true)
    rebuild: bool = True  # written into the manifest's rebuild command when it differs from the default
    nargs: str | None = None  # "+": the flag takes one or more values (a recipe: a list)


def _cli(flag: Flag) -> dict:
    return {"cli": flag}


_GATE = _reader_number(float, 0.0, 1.0, low_open=True, example=", a fraction such as 0.995")


@dataclass
class ExportOptions:
    """Everything ``rtseg export`` takes. Exactly one of ``model`` and ``onnx`` is set.

    ``mean``/``std``/``channel_order``/``value_scale`` left as None take the model's own normalisation.
    """

    model: str | None = field(default=None, metadata=_cli(Flag(
        "--model", "source", "a model of the zoo (see 'rtseg models')", recipe=("model", "name"), metavar="NAME")))
    weights: Path | None = field(default=None, metadata=_cli(Flag(
        "--weights", "source", "the model's checkpoint (.pth, or a Caffe .caffemodel for the FCNs), or a checkpoint"
        " of the catalogue ('rtseg models --weights'), fetched once into the cache; without it the untrained"
        " weights are exported", _read_path, _show_weights, ("model", "weights"), "FILE|NAME")))
    onnx: Path | None = field(default=None, metadata=_cli(Flag(
        "--onnx", "source", "bring your own ONNX segmentation model instead of --model", _read_path, _show_path,
        ("model", "onnx"), "FILE")))
    num_classes: int | None = field(default=None, metadata=_cli(Flag(
        "--num-classes", "source", "number of classes (default: the model's)", _reader_number(int, 1, MAX_CLASSES),
        recipe=("model", "num_classes"), metavar="N")))
    classes: str | None = field(default=None, metadata=_cli(Flag(
        "--classes", "source", "class names and palette for the manifest: cityscapes, voc, celebamask, a file of"
        " names (one a line) or a,b,c (default: the set the model or checkpoint declares, else class_<i>)",
        _read_classes, _show_classes, ("model", "classes"), "SET|FILE|a,b,c")))
    output: str | None = field(default=None, metadata=_cli(Flag(
        "--output", "source", "with --onnx: the graph output to use, for a graph with several (e.g. main and"
        " auxiliary heads)", recipe=("model", "output"), metavar="NAME")))
    input_size: tuple[int, int] | None = field(default=None, metadata=_cli(Flag(
        "--input-size", "input", "HxW of the graph (the optimisation size when --dynamic; default: the model's,"
        " as 'rtseg models' lists it, or the --onnx graph's)", read_size, _show_size,
        ("input", "size"), "HxW")))
    dynamic: tuple[tuple[int, int], tuple[int, int]] | None = field(default=None, metadata=_cli(Flag(
        "--dynamic", "input", "accept any size in this range", read_range,
        lambda v: f"{_show_size(v[0])}:{_show_size(v[1])}", ("input", "dynamic"), "MINHxMINW:MAXHxMAXW")))
    mean: tuple[float, float, float] | None = field(default=None, metadata=_cli(Flag(
        "--mean", "input", "per-channel mean, e.g. 0.485,0.456,0.406 (default: the model's)", _reader_triple(False),
        _show_triple, ("input", "mean"), "M,M,M")))
    std: tuple[float, float, float] | None = field(default=None, metadata=_cli(Flag(
        "--std", "input", "per-channel std, e.g. 0.229,0.224,0.225 (default: the model's)", _reader_triple(True),
        _show_triple,
        ("input", "std"), "S,S,S")))
    channel_order: str | None = field(default=None, metadata=_cli(Flag(
        "--channel-order", "input", "channel order the graph takes (default: the model's)",
        _reader_choice("RGB", "BGR", upper=True),
        recipe=("input", "channel_order"), metavar="{RGB,BGR}")))
    value_scale: float | None = field(default=None, metadata=_cli(Flag(
        "--value-scale", "input", "1 if mean/std are for pixels in [0,1], 255 for [0,255] (default: the model's)",
        _reader_number(float, 0.0, low_open=True), repr, ("input", "value_scale"), "S")))
    out: Path | None = field(default=None, metadata=_cli(Flag(
        "--out", "output", "the bundle directory to write", _read_path, _show_path, ("export", "out"), "DIR")))
    head: str = field(default="logits", metadata=_cli(Flag(
        "--head", "output", "logits: stop before the final upsample (default; the runtime fuses upsample+argmax);"
        " labels: upsample and argmax in the graph", _reader_choice("logits", "labels"), recipe=("export", "head"),
        metavar="{logits,labels}")))
    max_batch: int = field(default=1, metadata=_cli(Flag(
        "--max-batch", "output", "graphs with a batch axis taking up to N frames in one inference (default 1); checked"
        " by running a batch against the frames alone", _reader_number(int, 1, 1024), recipe=("export", "max_batch"),
        metavar="N")))
    precision: str = field(default="fp16", metadata=_cli(Flag(
        "--precision", "output", "engine precision (default fp16: a mixed-precision FP16 graph and a strongly typed"
        " engine built from it; int8: a quantized INT8 graph for the CPU, gated on held-out frames; bf16: the FP32"
        " graph run in BF16 by OpenVINO, gated the same way)", _reader_choice("fp16", "fp32", "int8", "bf16"),
        recipe=("export", "precision"), metavar="{fp16,fp32,int8,bf16}")))
    align_corners: bool = field(default=False, metadata=_cli(Flag(
        "--align-corners", "output", "with --onnx: the owed bilinear upsample uses align_corners=True", _read_switch,
        recipe=("export", "align_corners"), switch=True)))
    calib: Path | None = field(default=None, metadata=_cli(Flag(
        "--calib", "verification and build", "images, a folder of images or a video for calibration and"
        " verification (default: synthetic street-like scenes)", _read_path, _show_path, ("export", "calib"),
        "PATH")))
    calib_frames: int = field(default=4, metadata=_cli(Flag(
        "--calib-frames", "verification and build", "frames used at the input size (default 4)",
        _reader_number(int, 1, MAX_CALIB_FRAMES), recipe=("export", "calib_frames"), metavar="N")))
    calib_labels: Path | None = field(default=None, metadata=_cli(Flag(
        "--calib-labels", "verification and build", "with --precision int8/bf16: a folder of label PNGs for the"
        " --calib frames (<frame index:06d>.png of a video, <image stem>.png of images); the gate then checks mIoU",
        _read_path, _show_path, ("export", "calib_labels"), "DIR")))
    gate_frames: int = field(default=4, metadata=_cli(Flag(
        "--gate-frames", "verification and build", "with --precision int8/bf16: frames held out from calibration"
        " for the reduced-precision gate, taken from the same source between the calibration frames (default 4)",
        _reader_number(int, 1, MAX_CALIB_FRAMES), recipe=("export", "gate_frames"), metavar="N")))
    gate_int8: float = field(default=0.985, metadata=_cli(Flag(
        "--gate-int8", "verification and build", "min mean agreement of the INT8 (or BF16) graph with the FP32"
        " graph on the held-out frames (default 0.985)", _GATE, repr, ("export", "gate_int8"), "FRACTION")))
    gate_int8_worst: float = field(default=0.97, metadata=_cli(Flag(
        "--gate-int8-worst", "verification and build", "min agreement of its worst held-out frame (default 0.97)",
        _GATE, repr, ("export", "gate_int8_worst"), "FRACTION")))
    gate_int8_miou: float = field(default=0.5, metadata=_cli(Flag(
        "--gate-int8-miou", "verification and build", "max mIoU drop in points against the FP32 graph where"
        " --calib-labels are given (default 0.5)", _reader_number(float, 0.0, 100.0), repr,
        ("export", "gate_int8_miou"), "POINTS")))
    int8_keep_fp32: tuple[str, ...] | None = field(default=None, metadata=_cli(Flag(
        "--int8-keep-fp32", "verification and build", "ONNX node names (e.g. the last classifier conv) to keep in"
        " FP32 in the INT8 graph", _read_names, ",".join, ("export", "int8_keep_fp32"), "NODE", nargs="+")))
    int8_fallback: int = field(default=8, metadata=_cli(Flag(
        "--int8-fallback", "verification and build", "while the INT8 gate fails, return up to N most sensitive convs"
        " to FP32 (1, 2, 4, ... at a time; default 8, 0: off)", _reader_number(int, 0, 1000),
        recipe=("export", "int8_fallback"), metavar="N")))
    int8_tensorrt: bool = field(default=False, metadata=_cli(Flag(
        "--int8-tensorrt", "verification and build", "with --precision int8: also write the symmetric S8S8 QDQ"
        " graph TensorRT builds INT8 engines from (model.int8.s8s8.onnx)", _read_switch,
        recipe=("export", "int8_tensorrt"), switch=True)))
    gate_fp32: float = field(default=0.9999, metadata=_cli(Flag(
        "--gate-fp32", "verification and build", "min argmax agreement of the FP32 graph, overall and on every"
        " frame (default 0.9999)", _GATE, repr, ("export", "gate_fp32"), "FRACTION")))
    gate_fp16: float = field(default=0.995, metadata=_cli(Flag(
        "--gate-fp16", "verification and build", "min agreement of the FP16 graph (default 0.995)", _GATE, repr,
        ("export", "gate_fp16"), "FRACTION")))
    gate_engine: float = field(default=0.995, metadata=_cli(Flag(
        "--gate-engine", "verification and build", "min agreement of the engine (default 0.995)", _GATE, repr,
        ("export", "gate_engine"), "FRACTION")))
    fp16_converter: str = field(default="auto", metadata=_cli(Flag(
        "--fp16-converter", "verification and build", "auto (default): ModelOpt AutoCast if installed, else rtseg's"
        " own converter", _reader_choice("auto", "autocast", "rtseg"), recipe=("export", "fp16_converter"),
        metavar="{auto,autocast,rtseg}")))
    exporter: str = field(default="torchscript", metadata=_cli(Flag(
        "--exporter", "verification and build", "torch.onnx exporter (default torchscript)",
        _reader_choice("torchscript", "dynamo"), recipe=("export", "exporter"), metavar="{torchscript,dynamo}")))
    workspace_mib: int | None = field(default=None, metadata=_cli(Flag(
        "--workspace", "verification and build", "TensorRT builder workspace limit in MiB (default: TensorRT's:"
        " the GPU's free memory)",
        _reader_number(int, 16, 1 << 24), recipe=("export", "workspace_mib"), metavar="MIB")))
    require_engine: bool = field(default=False, metadata=_cli(Flag(
        "--require-engine", "verification and build", "fail instead of skipping the engine step where TensorRT or"
        " a GPU is missing", _read_switch, recipe=("export", "require_engine"), switch=True)))
    force: bool = field(default=False, metadata=_cli(Flag(
        "--force", "verification and build", "redo every step even if its inputs are unchanged", _read_switch,
        switch=True, rebuild=False)))
    command: str = ""  # the rebuild command written into the manifest (set by the CLI)

    # -- derived views -----------------------------------------------------------------------------------------
    @property
    def gates(self) -> dict[str, float]:
        """Gate per verified artifact (the names used in the manifest's ``verification``)."""
        return {"onnx": self.gate_fp32, "onnx_fp16": self.gate_fp16, "engine": self.gate_engine}

    def preprocessing(self, base):
        """The normalisation: ``base`` (what a checkpoint declares, e.g. DIGITS' input shift, else what the model's
        zoo entry declares, :attr:`rtseg.models.ModelInfo.preprocessing`) with the options given on top."""
        from ..bundle import Preprocessing

        return Preprocessing(self.mean or base.mean, self.std or base.std, self.channel_order or base.channel_order,
                             base.value_scale if self.value_scale is None else float(self.value_scale))

    def preprocessing_source(self, base: str) -> str:
        """Where :meth:`preprocessing`'s values came from, for the manifest: ``base`` or the flags over it."""
        given = [flag for flag, value in (("--mean", self.mean), ("--std", self.std),
                                          ("--channel-order", self.channel_order), ("--value-scale", self.value_scale))
                 if value is not None]
        if not given:
            return base
        flags = "/".join(given)
        return flags if self.mean and self.std else f"{flags} over {base}"

    def checked(self) -> ExportOptions:
        """A copy with every option read and range-checked (options made in code get the CLI's checks too)."""
        values = {}
        for f in option_fields():
            value = getattr(self, f.name)
            if value is not None and not (f.metadata["cli"].switch and value is False):
                values[f.name] = f.metadata["cli"].read(value, f.metadata["cli"].flag)
        opts = replace(self, **values)
        if opts.out is None:
            raise RtsegError("--out DIR is required: the bundle directory to write")
        if opts.model and opts.onnx:
            raise RtsegError("pass either --model or --onnx, not both")
        if not opts.model and not opts.onnx:
            raise RtsegError("pass either --model NAME or --onnx MODEL.onnx (or a recipe)")
        if opts.output and not opts.onnx:
            raise RtsegError("--output picks an output of an --onnx graph; a zoo model has one (drop --output)")
        return opts

    def rebuild_command(self) -> str:
        """The ``rtseg export`` command line that gives this bundle again (every option not at its default)."""
        parts = ["rtseg", "export"]
        for f in option_fields():
            spec, value = f.metadata["cli"], getattr(self, f.name)
            if not spec.rebuild or value is None or value == f.default:
                continue
            parts += [spec.flag] if spec.switch else [spec.flag, spec.show(value)]
        return " ".join(shlex.quote(p) for p in parts)


def option_fields():
    """The fields of :class:`ExportOptions` that are options (have a flag), in --help order."""
    return [f for f in fields(ExportOptions) if "cli" in f.metadata]


def recipe_keys() -> dict[tuple[str, str], str]:
    """``(table, key)`` of a recipe -> the option it sets."""
    return {f.metadata["cli"].recipe: f.name for f in option_fields() if f.metadata["cli"].recipe}


def options_from(recipe: dict, flags: dict) -> ExportOptions:
    """Options from a recipe's values and the flags given (flags win); every value read and checked."""
    merged = {**recipe, **{k: v for k, v in flags.items() if v is not None and v is not False}}
    by_name = {f.name: f.metadata["cli"] for f in option_fields()}
    values = {}
    for name, value in merged.items():
        values[name] = by_name[name].read(value, by_name[name].flag)
    return ExportOptions(**values).checked()
