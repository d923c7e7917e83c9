"""The export's reduced-precision step (``--precision int8`` or ``bf16``) and the gate that fits it.

The frames at the input size are split, interleaved so both sets span the source: ``--calib-frames`` calibrate the
INT8 ranges, ``--gate-frames`` others are held out for the gate; no frame is in both (the report lists each set).
A reduced-precision graph cannot pass FP32's gate (99.99% on every frame) by design, so it has its own, measuring
what a user loses against the FP32 graph on the held-out frames: mean per-pixel agreement (``--gate-int8``,
default 98.5%), the worst frame (``--gate-int8-worst``, 97%) and, where ground truth is given (``--calib-labels``),
the mIoU drop in points (``--gate-int8-miou``, 0.5).

INT8: the U8S8 graph is quantized (:mod:`rtseg.export.quantize`), checked for its fused form, and gated. While it
fails, the convs that add the most quantization error (:func:`rtseg.export.quantize.sensitivity`) go back to FP32,
1, 2, 4, ... at a time up to ``--int8-fallback`` layers; the report names them. BF16: the FP32 graph on OpenVINO
with its BF16 inference precision, gated the same way (no new file: the runner sets the hint).
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

import numpy as np

from ..bundle import Artifact
from ..bundle.format import INT8_FILE, INT8_S8S8_FILE
from ..errors import RtsegError
from ..files import sha256_file
from .steps import array_digest, artifact, hash_key

REDUCED = ("int8", "bf16")


def split_frames(total: int, held_out: int) -> tuple[list[int], list[int]]:
    """(calibration indices, gate indices) of ``total`` frames, ``held_out`` of them spread evenly for the gate."""
    held_out = min(held_out, total - 1)
    gate = [i for i in range(total) if (i + 1) * held_out // total > i * held_out // total]
    return [i for i in range(total) if i not in gate], gate


def check_frames(exp) -> None:
    """Before any slow step: enough frames for two disjoint sets, of the input's shape, with their labels."""
    opts, size = exp.opts, exp.shapes.opt
    names = exp.frame_sources[size]
    if len(names) < 2:
        src = opts.calib or "the synthetic scenes"
        raise RtsegError(f"--precision {opts.precision}: {src} gives {len(names)} frame; calibration and the gate"
                         f" need at least 2 different frames (the gate never sees a calibration frame): pass a"
                         f" longer video or more images with --calib")
    if opts.calib is not None:
        for shape in _source_shapes(Path(opts.calib), names):
            sa, ia = shape[1] / shape[0], size[1] / size[0]
            if max(sa / ia, ia / sa) > 1.25 or shape[0] * shape[1] * 16 < size[0] * size[1]:
                raise RtsegError(f"--calib {opts.calib}: frames of {shape[0]}x{shape[1]} are of another size family"
                                 f" than the graph's {size[0]}x{size[1]} input; INT8 ranges set on stretched or"
                                 f" blown-up frames do not fit what the model sees: pass frames of the input's"
                                 f" shape (or crop them first)")
    if opts.calib_labels is not None:
        if opts.calib is None:
            raise RtsegError("--calib-labels needs --calib: the labels belong to the calibration frames")
        for name in names:
            _label_file(opts.calib_labels, name)


def _frame_name(source: str) -> str:
    return re.sub(r" at \d+x\d+$", "", source)


def _source_shapes(calib: Path, names: list[str]) -> set[tuple[int, int]]:
    import cv2

    if calib.is_dir() or calib.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
        files = [calib / _frame_name(n) if calib.is_dir() else calib for n in names]
        return {cv2.imread(str(f), cv2.IMREAD_COLOR).shape[:2] for f in files}
    cap = cv2.VideoCapture(str(calib))
    shape = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
    cap.release()
    return {shape}


def _label_file(folder: Path, source: str) -> Path:
    """The label PNG of one frame: ``<index:06d>.png`` for a video frame, ``<stem>.png`` for an image."""
    name = _frame_name(source)
    m = re.search(r" frame (\d+)$", name)
    path = Path(folder) / (f"{int(m.group(1)):06d}.png" if m else f"{Path(name).stem}.png")
    if not path.is_file():
        raise RtsegError(f"--calib-labels {folder}: no label image {path.name} for {name}; pass a folder with one"
                         f" label PNG per frame (<frame index:06d>.png for a video, <image stem>.png for images)")
    return path


def _truth(folder: Path, sources: list[str], size: tuple[int, int]) -> np.ndarray:
    import cv2

    out = []
    for s in sources:
        lab = cv2.imread(str(_label_file(folder, s)), cv2.IMREAD_UNCHANGED)
        if lab is None or lab.ndim != 2:
            raise RtsegError(f"--calib-labels: {_label_file(folder, s)} is not a single-channel label image")
        out.append(cv2.resize(lab, (size[1], size[0]), interpolation=cv2.INTER_NEAREST))
    return np.stack(out)


def mean_iou(pred: np.ndarray, truth: np.ndarray, num_classes: int, ignore: int = 255) -> float:
    """mIoU as ``rtseg eval`` counts it (its confusion matrix and scores)."""
    from ..eval.metrics import ConfusionMatrix, scores

    cm = ConfusionMatrix(num_classes, ignore)
    cm.update(truth, pred)
    return scores(cm.matrix).mean_iou


class Gate:
    """The held-out frames, the FP32 graph's labels on them (and the ground truth), and the verdict on a candidate."""

    def __init__(self, exp, onnx_path: Path):
        from .verify import _run_frames, labels_from_output, onnxruntime_runner

        self.exp, opts, self.size = exp, exp.opts, exp.shapes.opt
        frames = exp.frames[self.size]
        self.calib_idx, self.gate_idx = split_frames(len(frames), opts.gate_frames)
        self.calib, self.held = frames[self.calib_idx], frames[self.gate_idx]
        sources = exp.frame_sources[self.size]
        self.names = [sources[i] for i in self.gate_idx]
        self.labels = lambda run, name: labels_from_output(_run_frames(run, self.held, name), exp.output_kind,
                                                           exp.upsample, self.size)
        self.fp32 = self.labels(onnxruntime_runner(onnx_path), "onnx")
        self.truth = _truth(opts.calib_labels, self.names, self.size) if opts.calib_labels else None
        self.frames_info = {"calibration": [sources[i] for i in self.calib_idx], "gate": self.names,
                            "note": "calibration and gate frames are disjoint, interleaved over the source"}

    def judge(self, run, name: str) -> dict:
        opts = self.exp.opts
        labels = self.labels(run, name)
        same = (labels == self.fp32).reshape(len(labels), -1).mean(axis=1)
        i = int(same.argmin())
        report = {"agreement": float(same.mean()), "per_frame": [float(a) for a in same],
                  "worst_frame": {"agreement": float(same[i]), "frame": self.names[i]},
                  "gates": {"mean": opts.gate_int8, "worst_frame": opts.gate_int8_worst}}
        failed = []
        if report["agreement"] < opts.gate_int8:
            failed.append(f"mean agreement {100 * report['agreement']:.2f}% < {100 * opts.gate_int8:.2f}%")
        if same[i] < opts.gate_int8_worst:
            failed.append(f"worst frame {100 * same[i]:.2f}% < {100 * opts.gate_int8_worst:.2f}%")
        if self.truth is not None:
            n = self.exp.num_classes
            fp32, cand = mean_iou(self.fp32, self.truth, n), mean_iou(labels, self.truth, n)
            report["miou"] = {"fp32": fp32, name: cand, "drop_points": 100 * (fp32 - cand), "frames": len(labels)}
            report["gates"]["miou_drop_points"] = opts.gate_int8_miou
            if 100 * (fp32 - cand) > opts.gate_int8_miou:
                failed.append(f"mIoU drop {100 * (fp32 - cand):.2f} > {opts.gate_int8_miou:g} points")
        report.update(passed=not failed, failed=failed)
        return report


def reduced_step(exp, onnx_path: Path, fp32_passed: bool) -> tuple[dict[str, Artifact | None], dict]:
    """(artifacts, verification entries) of ``--precision int8|bf16``."""
    opts = exp.opts
    name = "onnx_int8" if opts.precision == "int8" else "openvino_bf16"
    if not fp32_passed:
        return {}, {name: exp._skip(name, INT8_FILE if opts.precision == "int8" else "model.onnx",
                                    "the FP32 graph failed its gate")}
    gate = Gate(exp, onnx_path)
    if opts.precision == "bf16":
        from ..runtime.openvino import OpenVinoRunner

        report = gate.judge(OpenVinoRunner(onnx_path, "bf16", threads=None), name)
        report["frames"] = gate.frames_info
        _say(exp, name, "model.onnx (BF16)", report)
        return {}, {name: report}
    return _int8(exp, gate, onnx_path)


def _int8(exp, gate: Gate, onnx_path: Path):
    from .quantize import fused_form, quantize, sensitivity
    from .verify import onnxruntime_runner

    opts, out = exp.opts, exp.out
    dst = out / INT8_FILE
    keep = list(opts.int8_keep_fp32 or ())
    calib_sha = array_digest(gate.calib)
    key = hash_key("int8", sha256_file(onnx_path), calib_sha, keep, opts.int8_fallback, opts.gate_int8,
                   opts.gate_int8_worst, opts.gate_int8_miou, gate.frames_info["gate"], exp.tools)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rtseg-int8-") as tmp:
        cache = Path(tmp) / "ranges.json"
        reused = not opts.force and exp.steps.reusable("int8", key, [dst])
        if reused:
            keep = exp.steps.extra("int8").get("keep_fp32", keep)
        else:
            quantize(onnx_path, dst, gate.calib, exp.input_name, "u8s8", cache, keep)
        report = gate.judge(onnxruntime_runner(dst), "onnx_int8")
        ranked, returned, step = None, [], 1
        while not reused and not report["passed"] and len(returned) < opts.int8_fallback:
            if ranked is None:
                ranked = [r["node"] for r in sensitivity(onnx_path, dst, gate.calib[:1], exp.input_name)
                          if r["node"] not in keep]
                report["sensitivity"] = ranked[:opts.int8_fallback]
            more = ranked[len(returned):len(returned) + min(step, opts.int8_fallback - len(returned))]
            if not more:
                break
            returned += more
            step *= 2
            exp.say(f"  onnx_int8  gate failed ({'; '.join(report['failed'])}): {len(returned)} most sensitive"
                    f" conv(s) back to FP32")
            quantize(onnx_path, dst, gate.calib, exp.input_name, "u8s8", cache, keep + returned)
            sens = report.get("sensitivity")
            report = gate.judge(onnxruntime_runner(dst), "onnx_int8")
            if sens:
                report["sensitivity"] = sens
        if not reused:
            exp.steps.finish("int8", key, [dst], keep_fp32=keep + returned)
            keep = keep + returned
        form = fused_form(dst)
        report.update(form="u8s8", keep_fp32=keep, fallback_returned=returned, graph=form, frames=gate.frames_info)
        note = "reused" if reused else f"{time.perf_counter() - t:.1f} s"
        unfused = form["fp32_conv"] - form.get("attention_fp32_conv", 0)  # attention gates stay FP32 by design
        if report["passed"] and unfused > 0:
            note += f"; {unfused} conv(s) not fused to QLinearConv"
        if not report["passed"] and opts.int8_fallback:
            report["failed"].append(f"still failing with {len(returned)} layer(s) back in FP32: "
                                    f"{', '.join(returned) or 'none'}")
        _say(exp, "onnx_int8", INT8_FILE, report, note)
        artifacts, reports = {"onnx_int8": artifact(out, INT8_FILE)}, {"onnx_int8": report}
        if report["passed"]:
            reports.update(_openvino_int8(exp, gate, dst))
        s8 = out / INT8_S8S8_FILE
        if opts.int8_tensorrt and report["passed"]:
            quantize(onnx_path, s8, gate.calib, exp.input_name, "s8s8", cache, keep)
            rep = gate.judge(onnxruntime_runner(s8), "onnx_int8_s8s8")
            rep.update(form="s8s8", keep_fp32=keep, purpose="TensorRT's explicit-precision INT8 graph")
            _say(exp, "onnx_int8_s8s8", INT8_S8S8_FILE, rep)
            artifacts["onnx_int8_s8s8"], reports["onnx_int8_s8s8"] = artifact(out, INT8_S8S8_FILE), rep
        else:
            s8.unlink(missing_ok=True)  # an S8S8 graph of another run must not stay beside
    return artifacts, reports


def _openvino_int8(exp, gate: Gate, dst: Path) -> dict:
    """The same INT8 graph judged on OpenVINO, the runner ``auto`` puts it on (its kernels are not ONNX Runtime's):
    ``onnx_int8_openvino`` in the verification; a failure there leaves the export valid and ``auto`` on ONNX
    Runtime INT8 (rtseg.runtime.select.cpu_choice). Nothing is recorded where OpenVINO is not installed."""
    from ..runtime.openvino import OpenVinoRunner, openvino_missing_reason

    if openvino_missing_reason():
        return {}
    report = gate.judge(OpenVinoRunner(dst, "int8", threads=None), "onnx_int8_openvino")
    report["runner"] = "openvino"
    _say(exp, "onnx_int8_openvino", f"{INT8_FILE} on OpenVINO", report)
    return {"onnx_int8_openvino": report}


def _say(exp, name: str, file: str, report: dict, note: str | None = None) -> None:
    verdict = "ok" if report["passed"] else "FAILED (" + "; ".join(report["failed"]) + ")"
    miou = report.get("miou")
    m = f"  mIoU {100 * miou['fp32']:.2f} -> {100 * miou[name]:.2f}" if miou else ""
    exp.say(f"  {name:<10} {file:<16} agreement with FP32 {100 * report['agreement']:.2f}% (worst frame"
            f" {100 * report['worst_frame']['agreement']:.2f}%){m}  {verdict}{f'  [{note}]' if note else ''}")
