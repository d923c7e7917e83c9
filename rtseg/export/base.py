"""The steps every export shares, whatever its FP32 graph came from: :class:`Export`.

:mod:`rtseg.export.graph_sources` subclasses it for a zoo model in PyTorch and for the user's own ONNX file; each
fills in ``prepare``, ``fp32_graph``, ``make_reference`` and ``verify_fp32``. The steps here: frames, memory
check, FP16 graph, engine, verification reports, and the :class:`rtseg.bundle.Manifest` written last.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..bundle import (ENGINE_FILE, FAILED_MANIFEST, FP16_FILE, MANIFEST, ONNX_FILE, Artifact, InputSpec, Manifest,
                      ModelMeta, Upsample, normalize, write_manifest)
from ..bundle.classes import resolve_classes
from ..errors import RtsegError
from ..files import sha256_file
from ..scenes import load_frames_named, synthetic_scenes
from .options import ExportOptions
from .size_check import check_size_fits
from .steps import (StepRecord, array_digest, artifact, hash_key, prepare_out_dir, remove_if_empty,
                    tool_versions)
from .torch_onnx import OPSET

log = logging.getLogger(__name__)

_VERIFIED = ("onnx", "onnx_fp16", "onnx_int8", "onnx_int8_s8s8", "openvino_bf16", "engine")


@dataclass
class ExportResult:
    out: Path
    manifest: Manifest
    passed: bool
    manifest_path: Path


class Export:
    """Shared steps; subclasses provide the FP32 graph and the reference."""

    #: the class set the source declares (a name of rtseg.bundle.DATASETS) and who declares it; set by ``prepare``
    declared_classes: str | None = None
    classes_declared_by = "the source"

    def __init__(self, opts: ExportOptions, say):
        self.opts, self.say = opts, say
        self.timings: dict[str, float] = {}

    # -- steps ---------------------------------------------------------------------------------------------
    def run(self) -> ExportResult:
        t0 = time.perf_counter()
        self.prepare()  # all user errors surface here, before the output folder is touched
        self.classes = resolve_classes(self.num_classes, self.opts.classes, self.declared_classes,
                                       self.classes_declared_by)  # a wrong --classes now, not after the slow steps
        if self.classes[3]:
            self.say(self.classes[3])
        check_size_fits(list(self.frame_counts().items()), self.num_classes)  # absurd sizes
        self.check_memory()  # a size that cannot fit: one line now, not the OOM killer later
        self.frames = self.make_frames()  # --calib errors too
        if self.opts.precision in ("int8", "bf16"):
            from .reduced import check_frames

            check_frames(self)  # two disjoint frame sets of the input's shape, their labels: now, not later
        existed = Path(self.opts.out).exists()
        self.out = prepare_out_dir(self.opts.out)  # removes rtseg.json: from here on no stale promise
        try:
            return self._build(t0)
        except BaseException:  # an error or an interrupt: no manifest (removed above), no empty folder of ours
            if not existed:
                remove_if_empty(self.out)
            raise

    def _build(self, t0: float) -> ExportResult:
        self.say(f"rtseg export: {self.title} ({self.num_classes} classes) at {_size_text(self.shapes)}"
                 f" -> {self.opts.out}")
        self.steps = StepRecord(self.out)
        self.tools = tool_versions()
        onnx_path = self.out / ONNX_FILE
        self.reference = self.fp32_graph_and_reference(onnx_path)
        verification = {"frames": self.frames_info, "reference": self.reference_name, "gates": self.opts.gates}
        verification["onnx"] = self.verify_fp32(onnx_path)
        self._say_check("onnx", ONNX_FILE, verification["onnx"], verification["onnx"].pop("note", None))

        fp16 = None
        if self.opts.precision == "fp16":
            if verification["onnx"].get("passed", True):
                fp16, verification["onnx_fp16"] = self.fp16_graph(onnx_path)
            else:
                verification["onnx_fp16"] = self._skip("onnx_fp16", FP16_FILE, "the FP32 graph failed its gate")
        self.reduced = {}
        if self.opts.precision in ("int8", "bf16"):  # INT8 graphs (ORT/OpenVINO CPU, TensorRT) or OpenVINO BF16
            from .reduced import reduced_step

            self.reduced, reports = reduced_step(self, onnx_path, verification["onnx"].get("passed", True))
            verification.update(reports)
        engine_src = self.out / (FP16_FILE if fp16 else ONNX_FILE)
        if all(verification[k].get("passed", True) for k in _VERIFIED if k in verification):
            engine, build_stamp, verification["engine"] = self.engine(engine_src)
        else:
            (self.out / ENGINE_FILE).unlink(missing_ok=True)  # an engine of other graphs must not stay beside
            self.steps.forget("engine")
            engine, build_stamp = None, {}
            verification["engine"] = self._skip("engine", ENGINE_FILE, "an earlier gate failed")
        self.frames = self.reference = None  # verification is over: its frames and outputs can go

        failed = [k for k in _VERIFIED if not verification.get(k, {}).get("passed", True)]
        passed = verification["passed"] = not failed
        failed = [k for k in failed if "skipped" not in verification[k]]  # name the cause, not what it stopped
        manifest = self.manifest(verification, fp16, engine, build_stamp)
        manifest.artifacts.update(self.reduced)  # the INT8 graphs, named only in bundles that have them
        path = write_manifest(self.out, manifest, passed)  # the last write of the run
        took = time.perf_counter() - t0
        if passed:
            self.say(f"wrote {path} ({took:.1f} s)")
        else:
            self.say(f"verification FAILED for {', '.join(failed)}: artifacts and report kept in {self.out}"
                     f" ({FAILED_MANIFEST}); no {MANIFEST} was written ({took:.1f} s)")
        return ExportResult(self.out, manifest, passed, path)

    def _skip(self, name: str, file: str, why: str) -> dict:
        self.say(f"  {name:<10} {file:<16} skipped: {why}")
        return {"skipped": why, "passed": False}

    def make_frames(self) -> dict[tuple[int, int], np.ndarray]:
        """Normalised verification/calibration frames: ``calib_frames`` at the opt size, one at min and max."""
        frames, self.frame_sources = {}, {}
        for (h, w), n in self.frame_counts().items():
            if self.opts.calib is not None:
                raw, names = load_frames_named(self.opts.calib, n, h, w)
            else:
                seed = h * 10007 + w
                raw, names = synthetic_scenes(n, h, w, seed=seed), [f"synthetic scene {i} (seed {seed})"
                                                                    for i in range(n)]
            frames[(h, w)] = normalize(raw, self.pre)
            self.frame_sources[(h, w)] = [f"{name} at {h}x{w}" for name in names]
        source = str(self.opts.calib) if self.opts.calib is not None else "synthetic scenes (rtseg.scenes)"
        self.frames_info = {"source": source, "sizes": [[*s, int(f.shape[0])] for s, f in frames.items()]}
        return frames

    def frame_counts(self) -> dict[tuple[int, int], int]:
        """(H, W) -> how many frames: ``calib_frames`` at the opt size, one at min and max."""
        held_out = self.opts.gate_frames if self.opts.precision in ("int8", "bf16") else 0
        sizes = {self.shapes.opt: max(1, self.opts.calib_frames) + held_out}  # + the reduced gate's own frames
        if self.shapes.dynamic:
            sizes.update({s: 1 for s in (self.shapes.min, self.shapes.max) if s != self.shapes.opt})
        return sizes

    def check_memory(self) -> None:
        """Peak-memory estimate before any slow step (logged, so --verbose shows it); one line if it won't fit."""
        from .memory import estimate_export, network_memory

        sizes = self.frame_counts()
        largest = max(sizes, key=lambda s: s[0] * s[1])
        network = network_memory(getattr(self, "model", None), self.opts.onnx, self.input_name, self.output_kind,
                                 largest)
        if network is None:
            return  # the network cannot be walked without data; the export goes on unchecked
        estimate = estimate_export(sizes, self.num_classes, self.output_kind, *network)
        log.info("%s", estimate.text())
        estimate.check()

    def fp16_graph(self, onnx_path: Path) -> tuple[Artifact | None, dict]:
        from .fp16 import ATTEMPTS, available_converters, convert

        dst = self.out / FP16_FILE
        calib = self.frames[self.shapes.opt]
        converter = self.opts.fp16_converter
        if converter == "auto":
            converter = available_converters()[0]
        report = None
        src_sha, calib_sha = sha256_file(onnx_path), array_digest(calib)  # the same for every attempt
        for policy in ATTEMPTS:
            key = hash_key("fp16", src_sha, calib_sha, policy.as_dict(), converter, self.tools)
            t = time.perf_counter()
            if not self.opts.force and self.steps.reusable("fp16", key, [dst]):
                note = "reused"
            else:
                try:
                    convert(onnx_path, dst, calib, self.input_name, policy, converter,
                            ranges=getattr(self, "calib_ranges", None))
                except RtsegError as exc:
                    if self.opts.fp16_converter != "auto" or converter == "rtseg":
                        raise
                    self.say(f"  onnx_fp16  {exc}; falling back to rtseg's converter")
                    converter = "rtseg"
                    key = hash_key("fp16", src_sha, calib_sha, policy.as_dict(), converter, self.tools)
                    convert(onnx_path, dst, calib, self.input_name, policy, converter,
                            ranges=getattr(self, "calib_ranges", None))
                self.steps.finish("fp16", key, [dst])
                note = f"{time.perf_counter() - t:.1f} s"
            report = self.compare("onnx_fp16", dst, self.opts.gates["onnx_fp16"])
            report.update(converter=converter, policy=policy.as_dict(), nodes=_precision_counts(dst))
            self._say_check("onnx_fp16", FP16_FILE, report, note)
            if report["passed"]:
                break
        return artifact(self.out, FP16_FILE), report

    def engine(self, src: Path) -> tuple[Artifact | None, dict, dict]:
        from ..runtime.tensorrt import tensorrt_missing_reason
        from .engine_build import build_engine

        dst = self.out / ENGINE_FILE
        reason = tensorrt_missing_reason()
        if reason is not None:
            if dst.exists():
                dst.unlink()  # an engine from another run would not match these graphs
            self.steps.forget("engine")
            self.say(f"  engine     skipped: {reason}")
            return None, {}, {"skipped": reason, "passed": True}
        import tensorrt as trt

        from ..cuda.info import gpu_info

        gpu = gpu_info()
        key = hash_key("engine", sha256_file(src), self.shapes.as_dict(), self.opts.workspace_mib,
                         trt.__version__, gpu.compute_capability, gpu.name, self.tools)
        t = time.perf_counter()
        if not self.opts.force and self.steps.reusable("engine", key, [dst]):
            stamp, note = self.steps.extra("engine").get("stamp", {}), "reused"
        else:
            stamp = build_engine(src, dst, self.input_name, self.shapes, self.opts.workspace_mib)
            self.steps.finish("engine", key, [dst], stamp=stamp)
            note = f"{time.perf_counter() - t:.1f} s"
        from ..runtime.tensorrt import TensorRTRunner

        with TensorRTRunner(dst) as runner:
            report = self.compare("engine", dst, self.opts.gates["engine"], runner=runner)
        self._say_check("engine", ENGINE_FILE, report, note)
        return artifact(self.out, ENGINE_FILE), stamp, report

    # -- verification --------------------------------------------------------------------------------------
    def compare(self, name: str, path: Path, gate: float, runner=None) -> dict:
        from .allocator import release_memory
        from .verify import compare, first_nonfinite_node, onnxruntime_runner

        locate = None if runner is not None else (lambda x: first_nonfinite_node(path, x))
        runner = runner or onnxruntime_runner(path)
        try:
            return compare(name, runner, self.reference, self.output_kind, self.upsample, gate, locate=locate)
        finally:
            runner = None  # one session alive at a time: this one goes before the next step loads its graph
            release_memory()

    def _say_check(self, name: str, file: str, report: dict, note: str | None = None) -> None:
        if "agreement" not in report:
            self.say(f"  {name:<10} {file:<16} {report.get('skipped', '')}")
            return
        if "nonfinite" in report:
            bad = report["nonfinite"]
            where = f", first at {bad['first_node']}" if bad.get("first_node") else ""
            self.say(f"  {name:<10} {file:<16} NaN/inf in the output on {bad['frame']}{where}  FAILED")
            return
        err = ""
        if "max_abs_err" in report:
            err = f"  max|err| {report['max_abs_err']:.3g} (max|logit| {report['max_abs_ref']:.3g})"
        verdict = "ok" if report["passed"] else "FAILED"
        worst = report.get("worst_frame")
        if worst and worst["agreement"] < report["gate"]:
            verdict += f" (worst frame {100 * worst['agreement']:.2f}%: {worst['frame']})"
        extra = f"  [{note}]" if note else ""
        self.say(f"  {name:<10} {file:<16} agreement {100 * report['agreement']:.3f}%{err}"
                 f"  gate {100 * report['gate']:.2f}% {verdict}{extra}")

    # -- manifest ------------------------------------------------------------------------------------------
    def manifest(self, verification: dict, fp16: Artifact | None, engine: Artifact | None, stamp: dict) -> Manifest:
        import onnx
        import onnxruntime

        names, palette, class_source, _ = self.classes
        build = {"rtseg": __version__, "rtseg_code": self.tools["rtseg_code"], "torch": self.tools["torch"],
                 "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                 "onnxslim": self.tools["onnxslim"], "modelopt": self.tools["nvidia-modelopt"],
                 "tensorrt": stamp.get("tensorrt"), "gpu": stamp.get("gpu"),
                 "compute_capability": stamp.get("compute_capability"), "opset": OPSET,
                 "command": self.opts.command or None, "max_batch": self.opts.max_batch}
        model = ModelMeta(self.model_name, self.family, self.num_classes, names, palette, self.source_info,
                          class_source)
        inputs = InputSpec(self.shapes.opt, self.shapes.min, self.shapes.max, self.size_multiple)
        return Manifest(model=model, input_name=self.input_name, inputs=inputs, preprocessing=self.pre,
                        output_name=self.output_name, output_kind=self.output_kind,
                        upsample=Upsample.from_dict(self.upsample) if self.output_kind == "logits" else None,
                        artifacts={"onnx": artifact(self.out, ONNX_FILE), "onnx_fp16": fp16, "engine": engine},
                        verification=verification, build=build, preprocessing_source=self.pre_source)

    def fp32_graph_and_reference(self, onnx_path: Path):
        """The FP32 graph at ``onnx_path``, then the reference outputs (which may come from that graph)."""
        self.fp32_graph(onnx_path)
        return self.make_reference(onnx_path)

    # -- to be provided ------------------------------------------------------------------------------------
    def prepare(self) -> None: ...
    def fp32_graph(self, path: Path) -> None: ...
    def make_reference(self, onnx_path: Path): ...
    def verify_fp32(self, onnx_path: Path) -> dict: ...

    def _shapes_from_options(self) -> InputSpec:
        if self.opts.input_size is None:
            raise RtsegError("--input-size HxW is required (e.g. --input-size 512x1024)")
        opt = tuple(self.opts.input_size)
        if self.opts.dynamic is None:
            return InputSpec(opt)
        lo, hi = tuple(self.opts.dynamic[0]), tuple(self.opts.dynamic[1])
        if not (lo[0] <= opt[0] <= hi[0] and lo[1] <= opt[1] <= hi[1]):
            raise RtsegError(f"--input-size {opt[0]}x{opt[1]} is outside --dynamic {lo[0]}x{lo[1]}:{hi[0]}x{hi[1]};"
                             f" the input size is the optimisation size and must lie in the range")
        return InputSpec(opt, lo, hi)


def _size_text(shapes: InputSpec) -> str:
    text = f"{shapes.opt[0]}x{shapes.opt[1]}"
    if shapes.dynamic:
        text += f" (dynamic {shapes.min[0]}x{shapes.min[1]} to {shapes.max[0]}x{shapes.max[1]})"
    return text


def _precision_counts(path: Path) -> dict:
    """How many compute nodes of the FP16 graph run in FP16 and in FP32 (Casts and shape ops not counted)."""
    import onnx

    from .onnx_files import load_with_shapes

    model = load_with_shapes(path)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*model.graph.value_info, *model.graph.output]}
    half = full = 0
    for node in model.graph.node:
        if node.op_type in ("Cast", "Constant", "Shape", "Gather", "Unsqueeze", "Concat", "Slice", "Reshape"):
            continue
        t = types.get(node.output[0]) if node.output else None
        half += t == onnx.TensorProto.FLOAT16
        full += t == onnx.TensorProto.FLOAT
    return {"fp16": half, "fp32": full}
