"""Verification: a candidate graph (ONNX FP32, ONNX FP16, TensorRT engine) against the reference, on frames.

The reference is the PyTorch model (or, for a user's own ONNX, the FP32 graph run by ONNX Runtime). Both sides
are reduced to the labels a user would see: low-resolution logits go through the model's final upsample (PyTorch's
``F.interpolate``, the definition the runtime kernels are tested against) and an argmax whose ties go to the smaller
class index. Reported per size and overall: the argmax pixel agreement and the max abs logit error, with the
largest reference logit for scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import RtsegError

# A runner maps a float32 (N, 3, H, W) batch to the graph's output: (N, C, h, w) logits or (N, H, W) labels.
Runner = Callable[[np.ndarray], np.ndarray]

DEFAULT_GATES = {"onnx": 0.9999, "onnx_fp16": 0.995, "engine": 0.995}


@dataclass
class Reference:
    """The reference outputs for one set of frames, computed once and compared against every candidate."""

    inputs: dict[tuple[int, int], np.ndarray]  # (H, W) -> float32 (N, 3, H, W)
    logits: dict[tuple[int, int], np.ndarray | None] = field(default_factory=dict)  # (N, C, h, w) or None
    labels: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (N, H, W) int64


def labels_from_output(out: np.ndarray, kind: str, upsample: dict, size: tuple[int, int]) -> np.ndarray:
    """(N, C, h, w) logits -> (N, H, W) labels through the owed upsample; labels pass through as int64."""
    if kind == "labels":
        return out.astype(np.int64)
    import torch
    import torch.nn.functional as F

    low = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))  # (N, C, h, w)
    if upsample.get("mode", "none") == "none" or tuple(low.shape[-2:]) == tuple(size):
        return low.argmax(dim=1).numpy()  # (N, H, W)
    # One frame at a time: (N, C, H, W) float32 logits at 1024x2048 would be 160 MB per frame at once.
    align = bool(upsample.get("align_corners"))
    return np.concatenate([F.interpolate(low[i:i + 1], size=size, mode="bilinear", align_corners=align)
                           .argmax(dim=1).numpy() for i in range(low.shape[0])])  # (N, H, W)


def build_reference(run: Runner, inputs: dict, kind: str, upsample: dict) -> Reference:
    ref = Reference(inputs)
    for size, x in inputs.items():
        out = _run_frames(run, x, "reference")
        ref.logits[size] = out if kind == "logits" else None
        ref.labels[size] = labels_from_output(out, kind, upsample, size)
    return ref


def compare(name: str, run: Runner, ref: Reference, kind: str, upsample: dict, gate: float) -> dict:
    """Run a candidate on the reference's frames; return its report (``passed`` against ``gate``)."""
    per_size, agree_px, total_px = [], 0, 0
    max_err, max_ref = 0.0, 0.0
    for size, x in ref.inputs.items():
        out = _run_frames(run, x, name)
        labels = labels_from_output(out, kind, upsample, size)
        if labels.shape != ref.labels[size].shape:
            raise RtsegError(f"{name} gives labels of shape {labels.shape} at input {size[0]}x{size[1]}, the"
                             f" reference {ref.labels[size].shape}; the graph does not fit this model")
        agree = int((labels == ref.labels[size]).sum())
        entry = {"size": list(size), "frames": int(x.shape[0]), "agreement": agree / labels.size}
        if kind == "logits" and ref.logits[size] is not None:
            err = float(np.abs(out.astype(np.float32) - ref.logits[size]).max())
            scale = float(np.abs(ref.logits[size]).max())
            entry.update(max_abs_err=err, max_abs_ref=scale)
            max_err, max_ref = max(max_err, err), max(max_ref, scale)
        per_size.append(entry)
        agree_px += agree
        total_px += labels.size
    agreement = agree_px / total_px
    report = {"agreement": agreement, "gate": gate, "passed": agreement >= gate, "per_size": per_size}
    if kind == "logits":
        report.update(max_abs_err=max_err, max_abs_ref=max_ref)
    return report


def _run_frames(run: Runner, x: np.ndarray, name: str) -> np.ndarray:
    """One frame at a time (a graph exported for batch 1 takes no more), concatenated."""
    try:
        return np.concatenate([run(x[i:i + 1]) for i in range(x.shape[0])])
    except RtsegError:
        raise
    except Exception as exc:  # noqa: BLE001 - a runtime failure on valid frames means the graph is broken
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RtsegError(f"{name} failed at input {x.shape[2]}x{x.shape[3]}: {first}") from None


def torch_runner(model, head: str) -> Runner:
    """The PyTorch reference: low-resolution logits for ``head="logits"``, else labels at input size."""
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(x)
            if head == "logits":
                return model.forward_lowres(t).numpy()  # (N, C, h, w)
            return model(t).argmax(dim=1).numpy()  # (N, H, W)

    return run


def onnxruntime_runner(path) -> Runner:
    """ONNX Runtime on CPU; inputs are cast to the graph's input type (float16 I/O graphs included)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        raise RtsegError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0][:300]}") from None
    inp = sess.get_inputs()[0]
    dtype = np.float16 if "float16" in inp.type else np.float32

    def run(x: np.ndarray) -> np.ndarray:
        out = sess.run(None, {inp.name: x.astype(dtype)})[0]
        return out.astype(np.float32) if out.dtype == np.float16 else out

    return run
