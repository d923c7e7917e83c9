"""Verification: a candidate graph (ONNX FP32, ONNX FP16, TensorRT engine) against the reference, on frames.

The reference is the PyTorch model (or, for a user's own ONNX, the FP32 graph run by ONNX Runtime). Both sides
are reduced to the labels a user would see: low-resolution logits go through the model's final upsample (PyTorch's
``F.interpolate``, the definition the runtime kernels are tested against) and an argmax whose ties go to the smaller
class index. Reported per size, per frame and overall: the argmax pixel agreement and the max abs logit error, with
the largest reference logit for scale.

A candidate passes when the overall agreement AND every single frame's agreement reach the gate (an average can hide
one real photo that a graph gets wrong). Any NaN or infinity in an output fails it outright (NaN == NaN is not
agreement); the report names the frame and, for an ONNX graph, the first node that produced it. A reference that is
not finite is an error, naming its cause: the inputs (normalisation) or the first module/node.
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
    labels: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (N, H, W) integer labels
    sources: dict[tuple[int, int], list[str]] = field(default_factory=dict)  # where each frame came from

    def source(self, size: tuple[int, int], index: int) -> str:
        names = self.sources.get(size) or []
        return names[index] if index < len(names) else f"frame {index} at {size[0]}x{size[1]}"


def labels_from_output(out: np.ndarray, kind: str, upsample: dict, size: tuple[int, int]) -> np.ndarray:
    """(N, C, h, w) logits -> (N, H, W) integer labels through the owed upsample; labels pass through as int64.

    The bilinear upsample + argmax is rtseg's fused CPU kernel where it is built (the runtime's own post-processing,
    tested label-for-label against ``F.interpolate(...).argmax(1)``; tens of times faster at 1024x2048), else
    PyTorch's. Both sides of a comparison go through the same function, so the agreement measures the graphs.
    """
    if kind == "labels":
        return out.astype(np.int64)
    mode = upsample.get("mode", "none")
    if mode == "none" or tuple(out.shape[-2:]) == tuple(size):
        return np.ascontiguousarray(out).argmax(axis=1)  # (N, H, W); ties go to the first class, as in PyTorch
    align = bool(upsample.get("align_corners"))
    from ..kernels.cpu import extension

    if mode == "bilinear" and extension() is not None:
        from ..kernels import upsample_argmax

        return upsample_argmax(np.ascontiguousarray(out), tuple(size), align_corners=align)  # (N, H, W)
    import torch
    import torch.nn.functional as F

    low = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))  # (N, C, h, w)
    # One frame at a time: (N, C, H, W) float32 logits at 1024x2048 would be 160 MB per frame at once.
    return np.concatenate([F.interpolate(low[i:i + 1], size=size, mode=mode, align_corners=align)
                           .argmax(dim=1).numpy() for i in range(low.shape[0])])  # (N, H, W)


def build_reference(run: Runner, inputs: dict, kind: str, upsample: dict, sources: dict | None = None,
                    locate: Callable[[np.ndarray], str | None] | None = None) -> Reference:
    """Run the reference once on every frame; a NaN or infinity in it is an error naming where it comes from."""
    ref = Reference(inputs, sources=dict(sources or {}))
    for size, x in inputs.items():
        if not np.isfinite(x).all():
            raise RtsegError("the normalised input frames hold NaN or infinity; check --mean, --std and --value-scale")
        out = _run_frames(run, x, "reference")
        bad = _nonfinite_frames(out)
        if bad:
            where = locate(x[bad[0]:bad[0] + 1]) if locate else None
            raise RtsegError(f"the reference output holds NaN or infinity on {ref.source(size, bad[0])}"
                             f"{f', first at {where}' if where else ''}; the model's weights or graph produce it")
        ref.logits[size] = out if kind == "logits" else None
        ref.labels[size] = labels_from_output(out, kind, upsample, size)
    return ref


def compare(name: str, run: Runner, ref: Reference, kind: str, upsample: dict, gate: float,
            locate: Callable[[np.ndarray], str | None] | None = None) -> dict:
    """Run a candidate on the reference's frames; return its report (``passed`` against ``gate``).

    ``locate(x)`` names the first node giving a non-finite value on input ``x`` (called only when one appears).
    """
    per_size, agree_px, total_px = [], 0, 0
    max_err, max_ref = 0.0, 0.0
    worst, nonfinite = None, None
    for size, x in ref.inputs.items():
        out = _run_frames(run, x, name)
        bad = _nonfinite_frames(out)
        if bad and nonfinite is None:
            where = locate(x[bad[0]:bad[0] + 1]) if locate else None
            nonfinite = {"frame": ref.source(size, bad[0]), "size": list(size), "frames": len(bad),
                         "values": int((~np.isfinite(out)).sum()), "first_node": where}
        labels = labels_from_output(out, kind, upsample, size)
        if labels.shape != ref.labels[size].shape:
            raise RtsegError(f"{name} gives labels of shape {labels.shape} at input {size[0]}x{size[1]}, the"
                             f" reference {ref.labels[size].shape}; the graph does not fit this model")
        same = labels == ref.labels[size]  # (N, H, W)
        per_frame = same.reshape(same.shape[0], -1).mean(axis=1)  # (N,)
        i = int(per_frame.argmin())
        if worst is None or per_frame[i] < worst["agreement"]:
            worst = {"agreement": float(per_frame[i]), "frame": ref.source(size, i), "size": list(size)}
        agree = int(same.sum())
        entry = {"size": list(size), "frames": int(x.shape[0]), "agreement": agree / labels.size,
                 "per_frame": [float(a) for a in per_frame]}
        if kind == "logits" and ref.logits[size] is not None:
            diff = np.abs(out.astype(np.float32) - ref.logits[size])
            err = float(diff[np.isfinite(diff)].max(initial=0.0))
            scale = float(np.abs(ref.logits[size]).max())
            entry.update(max_abs_err=err, max_abs_ref=scale)
            max_err, max_ref = max(max_err, err), max(max_ref, scale)
        per_size.append(entry)
        agree_px += agree
        total_px += labels.size
    agreement = agree_px / total_px
    passed = agreement >= gate and worst["agreement"] >= gate and nonfinite is None
    report = {"agreement": agreement, "gate": gate, "passed": passed, "worst_frame": worst, "per_size": per_size}
    if nonfinite is not None:
        report["nonfinite"] = nonfinite
    if kind == "logits":
        report.update(max_abs_err=max_err, max_abs_ref=max_ref)
    return report


def _nonfinite_frames(out: np.ndarray) -> list[int]:
    """Indices of the frames whose output holds NaN or infinity (integer labels never do)."""
    if not np.issubdtype(out.dtype, np.floating):
        return []
    finite = np.isfinite(out.reshape(out.shape[0], -1)).all(axis=1)  # (N,)
    return [int(i) for i in np.flatnonzero(~finite)]


def _run_frames(run: Runner, x: np.ndarray, name: str) -> np.ndarray:
    """One frame at a time (a graph exported for batch 1 takes no more), concatenated; a progress bar on a terminal."""
    from tqdm import tqdm

    frames = tqdm(range(x.shape[0]), desc=f"  {name} {x.shape[2]}x{x.shape[3]}", unit="frame", leave=False,
                  disable=None)  # None: only where stderr is a terminal (not in logs or tests)
    try:
        return np.concatenate([run(x[i:i + 1]) for i in frames])
    except RtsegError:
        raise
    except Exception as exc:  # noqa: BLE001 - a runtime failure on valid frames means the graph is broken
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RtsegError(f"{name} failed at input {x.shape[2]}x{x.shape[3]}: {first}") from None


def torch_runner(model, head: str) -> Runner:
    """The PyTorch reference: low-resolution logits for ``head="logits"``, else labels at input size.

    A model that declares ``cpu_channels_last`` is switched to that memory format (in place) and fed NHWC-strided
    inputs: the same values to float rounding, in less time.
    """
    import torch

    layout = torch.channels_last if getattr(model, "cpu_channels_last", False) else torch.contiguous_format
    model.to(memory_format=layout)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(x).contiguous(memory_format=layout)
            if head == "logits":
                return model.forward_lowres(t).contiguous().numpy()  # (N, C, h, w)
            logits = model(t)  # (N, C, H, W)
            if not bool(torch.isfinite(logits).all()):  # an argmax would hide it
                where = first_nonfinite_module(model, t)
                raise RtsegError(f"the PyTorch reference gives NaN or infinity at input {x.shape[2]}x{x.shape[3]}"
                                 f"{f', first at {where}' if where else ''}; the model's weights or inputs produce it")
            return logits.argmax(dim=1).numpy()  # (N, H, W)

    return run


def first_nonfinite_module(model, x) -> str | None:
    """The first leaf module (in execution order) whose output holds NaN or infinity on input ``x``."""
    import torch

    found: list[str] = []
    hooks = []

    def hook(name):
        def check(module, args, output):
            if not found and isinstance(output, torch.Tensor) and output.is_floating_point() \
                    and not bool(torch.isfinite(output).all()):
                found.append(f"module {name} ({type(module).__name__})")
        return check

    for name, module in model.named_modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(hook(name)))
    try:
        with torch.inference_mode():
            model(torch.as_tensor(x))
    finally:
        for h in hooks:
            h.remove()
    return found[0] if found else None


def first_nonfinite_node(path, x: np.ndarray) -> str | None:
    """The first node (in graph order) of an ONNX graph whose output holds NaN or infinity on input ``x``."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    graph_outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in graph_outputs:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
                graph_outputs.add(name)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node as it is
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        names = [o.name for o in sess.get_outputs()]
        values = dict(zip(names, sess.run(None, {inp.name: x.astype(np.float16 if "float16" in inp.type
                                                                    else np.float32)})))
    except Exception:  # noqa: BLE001 - locating is a courtesy; the failure itself is reported anyway
        return None
    for node in model.graph.node:
        for name in node.output:
            v = values.get(name)
            if isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all():
                return f"{node.op_type} node {node.name or name!r}"
    return None


def first_nonfinite_initializer(path) -> str | None:
    """The first weight (initializer) of an ONNX graph that holds NaN or infinity."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            return init.name
    return None


def onnxruntime_runner(path) -> Runner:
    """ONNX Runtime on CPU, through the runtime's runner (float16-input graphs are fed float16)."""
    from ..runtime.onnxruntime import OnnxRuntimeRunner

    return OnnxRuntimeRunner(path, "cpu").activate()
