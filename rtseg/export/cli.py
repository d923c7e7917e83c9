"""``rtseg export``: checkpoint or ONNX -> verified ONNX, FP16 ONNX and TensorRT engine bundle.

Argument definitions import nothing heavy; :func:`run` imports torch/onnx/onnxruntime when it runs.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from ..errors import RtsegError

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("examples:\n"
                     "  rtseg export --model fast_scnn --weights fast_scnn_citys.pth --input-size 1024x2048"
                     " --out bundles/fast_scnn\n"
                     "  rtseg export --onnx unet.onnx --num-classes 2 --input-size 256x256 --out bundles/unet\n"
                     "  rtseg export export/bisenetv1.toml --weights model_final_v1_city_new.pth")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("recipe", nargs="?", help="an export recipe (export/*.toml); flags given here win over it")
    src = parser.add_argument_group("source")
    src.add_argument("--model", help="a model of the zoo (see 'rtseg models')")
    src.add_argument("--weights", help="the model's checkpoint (.pth, or a Caffe .caffemodel for the FCNs);"
                     " without it the untrained weights are exported")
    src.add_argument("--onnx", help="bring your own ONNX segmentation model instead of --model")
    src.add_argument("--num-classes", type=int, help="number of classes (default: the model's)")
    src.add_argument("--classes", help="class names and palette for the manifest: cityscapes or voc"
                                       " (default: guessed from the class count)")
    shape = parser.add_argument_group("input")
    shape.add_argument("--input-size", help="HxW of the graph (the optimisation size when --dynamic)")
    shape.add_argument("--dynamic", metavar="MINHxMINW:MAXHxMAXW", help="accept any size in this range")
    shape.add_argument("--mean", help="per-channel mean, e.g. 0.485,0.456,0.406 (default: the model's)")
    shape.add_argument("--std", help="per-channel std, e.g. 0.229,0.224,0.225")
    shape.add_argument("--channel-order", choices=("RGB", "BGR"), help="channel order the graph takes")
    shape.add_argument("--value-scale", type=float, help="1 if mean/std are for pixels in [0,1], 255 for [0,255]")
    out = parser.add_argument_group("output")
    out.add_argument("--out", help="the bundle directory to write")
    out.add_argument("--head", choices=("logits", "labels"), help="logits: stop before the final upsample"
                     " (default; the runtime fuses upsample+argmax); labels: upsample and argmax in the graph")
    out.add_argument("--precision", choices=("fp16", "fp32"), help="engine precision (default fp16: a mixed-"
                     "precision FP16 graph and a strongly typed engine built from it)")
    out.add_argument("--align-corners", action="store_true",
                     help="with --onnx: the owed bilinear upsample uses align_corners=True")
    ver = parser.add_argument_group("verification and build")
    ver.add_argument("--calib", help="images, a folder of images or a video for calibration and verification"
                                     " (default: synthetic street-like scenes)")
    ver.add_argument("--calib-frames", type=int, help="frames used at the input size (default 4)")
    ver.add_argument("--gate-fp32", type=float, help="min argmax agreement of the FP32 graph (default 0.9999)")
    ver.add_argument("--gate-fp16", type=float, help="min agreement of the FP16 graph (default 0.995)")
    ver.add_argument("--gate-engine", type=float, help="min agreement of the engine (default 0.995)")
    ver.add_argument("--fp16-converter", choices=("auto", "autocast", "rtseg"),
                     help="auto (default): ModelOpt AutoCast if installed, else rtseg's own converter")
    ver.add_argument("--exporter", choices=("torchscript", "dynamo"), help="torch.onnx exporter (default torchscript)")
    ver.add_argument("--workspace", type=int, metavar="MIB", help="TensorRT builder workspace limit in MiB")
    ver.add_argument("--require-engine", action="store_true", help="fail instead of skipping the engine step"
                                                                   " where TensorRT or a GPU is missing")
    ver.add_argument("--force", action="store_true", help="redo every step even if its inputs are unchanged")


def parse_size(text, flag: str) -> tuple[int, int]:
    if isinstance(text, (list, tuple)) and len(text) == 2:
        h, w = (int(v) for v in text)
    else:
        m = _SIZE.match(str(text))
        if not m:
            raise RtsegError(f"{flag} {text!r}: expected HxW, e.g. 512x1024")
        h, w = int(m.group(1)), int(m.group(2))
    if h < 1 or w < 1:
        raise RtsegError(f"{flag} {text!r}: height and width must be positive")
    return h, w


def parse_range(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    parts = str(text).split(":")
    if len(parts) != 2:
        raise RtsegError(f"--dynamic {text!r}: expected MINHxMINW:MAXHxMAXW, e.g. 256x512:1024x2048")
    lo, hi = parse_size(parts[0], "--dynamic"), parse_size(parts[1], "--dynamic")
    if lo[0] > hi[0] or lo[1] > hi[1]:
        raise RtsegError(f"--dynamic {text!r}: the minimum is larger than the maximum")
    return lo, hi


def _floats(text, flag: str) -> tuple[float, float, float]:
    values = text if isinstance(text, (list, tuple)) else str(text).split(",")
    try:
        out = tuple(float(v) for v in values)
    except ValueError:
        raise RtsegError(f"{flag} {text!r}: expected three numbers, e.g. 0.485,0.456,0.406") from None
    if len(out) != 3:
        raise RtsegError(f"{flag} {text!r}: expected three numbers (one per channel)")
    return out


def _number(value, flag: str, kind):
    """``kind(value)`` for a number that may come from a recipe as any TOML type."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise RtsegError(f"{flag} {value!r}: expected a {'whole number' if kind is int else 'number'}") from None


def options_from_args(args):
    """Merge the recipe (if any) and the flags into :class:`~rtseg.export.pipeline.ExportOptions`."""
    from .pipeline import ExportOptions
    from .recipes import default_preprocessing, load_recipe
    from .scenes import Preprocessing
    from .verify import DEFAULT_GATES

    merged = load_recipe(args.recipe) if args.recipe else {}
    for key in ("model", "weights", "onnx", "num_classes", "classes", "input_size", "dynamic", "mean", "std",
                "channel_order", "value_scale", "out", "head", "precision", "calib", "calib_frames", "gate_fp32",
                "gate_fp16", "gate_engine", "fp16_converter", "workspace"):
        value = getattr(args, key, None)
        if value is not None:
            merged[key] = value
    if args.recipe and "out" not in merged:
        merged["out"] = str(Path("bundles") / Path(args.recipe).stem)
    if not merged.get("out"):
        raise RtsegError("--out DIR is required: the bundle directory to write")
    if merged.get("model") and merged.get("onnx"):
        raise RtsegError("pass either --model or --onnx, not both")

    pre = None
    if any(k in merged for k in ("mean", "std", "channel_order", "value_scale")):
        base = default_preprocessing(merged.get("model"), None)
        if merged.get("model"):
            from ..models import model_info

            base = default_preprocessing(merged["model"], model_info(merged["model"]).family)
        pre = Preprocessing(
            _floats(merged["mean"], "--mean") if "mean" in merged else base.mean,
            _floats(merged["std"], "--std") if "std" in merged else base.std,
            str(merged.get("channel_order", base.channel_order)).upper(),
            _number(merged.get("value_scale", base.value_scale), "--value-scale", float))
    gates = dict(DEFAULT_GATES)
    for flag, key in (("gate_fp32", "onnx"), ("gate_fp16", "onnx_fp16"), ("gate_engine", "engine")):
        if flag in merged:
            gate = _number(merged[flag], f"--{flag.replace('_', '-')}", float)
            if not 0.0 <= gate <= 1.0:
                raise RtsegError(f"--{flag.replace('_', '-')} {gate}: a fraction between 0 and 1, e.g. 0.995")
            gates[key] = gate
    return ExportOptions(
        out=Path(merged["out"]),
        input_size=parse_size(merged["input_size"], "--input-size") if merged.get("input_size") else None,
        model=merged.get("model"),
        weights=Path(merged["weights"]) if merged.get("weights") else None,
        onnx=Path(merged["onnx"]) if merged.get("onnx") else None,
        num_classes=_number(merged["num_classes"], "--num-classes", int) if merged.get("num_classes") is not None
        else None,
        dynamic=parse_range(merged["dynamic"]) if merged.get("dynamic") else None,
        head=merged.get("head", "logits"),
        precision=merged.get("precision", "fp16"),
        calib=Path(merged["calib"]) if merged.get("calib") else None,
        calib_frames=_number(merged.get("calib_frames", 4), "--calib-frames", int),
        preprocessing=pre,
        classes=merged.get("classes"),
        gates=gates,
        force=bool(args.force),
        require_engine=bool(args.require_engine),
        workspace_mib=_number(merged["workspace"], "--workspace", int) if merged.get("workspace") else None,
        fp16_converter=merged.get("fp16_converter", "auto"),
        exporter=args.exporter or "torchscript",
        align_corners=bool(args.align_corners),
    )


def run(args) -> int:
    from .pipeline import run_export

    opts = options_from_args(args)
    opts.command = _command_from(opts)  # the manifest's rebuild command
    result = run_export(opts)
    return 0 if result.passed else 1


def _command_from(opts) -> str:
    parts = ["rtseg", "export"]
    if opts.model:
        parts += ["--model", opts.model]
    if opts.onnx:
        parts += ["--onnx", str(opts.onnx)]
    if opts.weights:
        parts += ["--weights", str(opts.weights)]
    if opts.num_classes:
        parts += ["--num-classes", str(opts.num_classes)]
    if opts.input_size:
        parts += ["--input-size", "{}x{}".format(*opts.input_size)]
    if opts.dynamic:
        parts += ["--dynamic", "{}x{}:{}x{}".format(*opts.dynamic[0], *opts.dynamic[1])]
    if opts.head != "logits":
        parts += ["--head", opts.head]
    if opts.precision != "fp16":
        parts += ["--precision", opts.precision]
    parts += ["--out", str(opts.out)]
    return " ".join(shlex.quote(p) for p in parts)
