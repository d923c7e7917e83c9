"""Value ranges of every tensor of an ONNX graph over calibration frames, in bounded memory.

The FP16 step needs, for each tensor, the largest magnitude it takes on the calibration frames. The direct way,
marking every tensor a graph output, makes ONNX Runtime hand back (and keep) all intermediate tensors of a frame at
once: at 1024x2048 that is many gigabytes, growing with the number of tensors. Here the reduction happens inside
the graph instead: each tensor gets a ``ReduceMax``, a ``ReduceMin`` and a ``Shape`` consumer placed right after
its producer, and only those scalars leave the graph. ONNX Runtime frees every intermediate after its last reader
as in a plain inference, so the memory is one inference's plus a few bytes per tensor, and one run per frame
(not one per chunk of tensors) gives all ranges. Running maxima are kept across frames; no frame is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import RtsegError

log = logging.getLogger(__name__)

# ONNX element types ReduceMax/ReduceMin take directly on ONNX Runtime's CPU provider; others are cast to float.
_REDUCIBLE = {1, 6, 7, 11}  # float, int32, int64, double
_FLOAT = 1


@dataclass
class TensorRange:
    """What the FP16 rules need of one tensor: its extremes over all frames, and its shape (from the first)."""

    min_val: float
    max_val: float
    shape: tuple[int, ...]

    @property
    def absmax(self) -> float:
        return max(abs(self.min_val), abs(self.max_val))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


def range_probe(model, keep_outputs: bool = False, in_place: bool = False):
    """A copy of ``model`` (or ``model`` itself, changed, where ``in_place``: no second copy of the weights) whose
    outputs are ``(max, min, shape)`` of every typed node output, and the names.

    ``model`` must carry value_info (run ONNX shape inference first); tensors of unknown type are left out.
    Returns ``(probe, observed)`` where ``observed`` lists the tensor names in output order (three outputs each,
    after the graph's own outputs where ``keep_outputs``).
    """
    import onnx
    from onnx import helper

    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    inits = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    if in_place:
        probe = model
    else:
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
    graph = probe.graph
    nodes = list(graph.node)
    del graph.node[:]
    if not keep_outputs:
        del graph.output[:]
    observed: list[str] = []
    for name in inputs:
        _observe(graph, name, types.get(name, 0), observed, helper)
    for node in nodes:
        graph.node.append(node)
        for name in node.output:
            if name and types.get(name, 0):
                _observe(graph, name, types[name], observed, helper)
            elif name:
                log.debug("range probe: no type for %s; its range is not measured", name)
    return probe, observed


def _observe(graph, name: str, elem_type: int, observed: list[str], helper) -> None:
    src = name
    k = len(observed)
    if elem_type not in _REDUCIBLE:
        src = f"__rtseg_range_{k}_f32"
        graph.node.append(helper.make_node("Cast", [name], [src], to=_FLOAT, name=f"__rtseg_range_cast_{k}"))
    for op in ("ReduceMax", "ReduceMin"):
        out = f"__rtseg_range_{k}_{op[-3:].lower()}"
        graph.node.append(helper.make_node(op, [src], [out], keepdims=0, name=f"__rtseg_range_{op}_{k}"))
        graph.output.append(helper.make_tensor_value_info(out, elem_type if src == name else _FLOAT, None))
    out = f"__rtseg_range_{k}_shape"
    graph.node.append(helper.make_node("Shape", [name], [out], name=f"__rtseg_range_shape_{k}"))
    graph.output.append(helper.make_tensor_value_info(out, 7, None))
    observed.append(name)


def collect_ranges(model, frames: Iterable[dict[str, np.ndarray]]) -> dict[str, TensorRange]:
    """Extremes and shape of every typed tensor of ``model`` (inputs included) over ``frames``.

    ``model``: a shape-inferred ``ModelProto`` (left unchanged), or the path of a graph file (loaded once and made
    the probe itself, the cheaper way for a big graph). ``frames`` yields one feed dict per run (batch 1); it may be
    a generator, so frames need not all be in memory.
    """
    from .allocator import release_memory
    from .onnx_files import load_with_shapes

    from_file = not hasattr(model, "graph")
    probe, observed = range_probe(load_with_shapes(model) if from_file else model, in_place=from_file)
    sess = _session(probe)
    del probe
    release_memory()
    names = [o.name for o in sess.get_outputs()]
    ranges: dict[str, TensorRange] = {}
    for feeds in frames:
        _accumulate(ranges, observed, sess.run(names, feeds))
    return ranges


class RangeCollectingRunner:
    """A verification runner (float32 ``(1, 3, H, W)`` -> the graph's first output) for an FP32 graph that also
    collects the ranges of frames of ``calib_size``: one pass over the frames serves the FP32 check and the FP16
    step's calibration."""

    def __init__(self, path, calib_size: tuple[int, int]):
        from .allocator import release_memory
        from .onnx_files import load_with_shapes

        model = load_with_shapes(path)
        self.num_outputs = len(model.graph.output)
        self.input_name = model.graph.input[0].name
        probe, self.observed = range_probe(model, keep_outputs=True, in_place=True)
        del model
        self.sess = _session(probe)
        del probe
        release_memory()
        self.calib_size = tuple(calib_size)
        self.ranges: dict[str, TensorRange] = {}
        self.frames = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        outs = self.sess.run(None, {self.input_name: x.astype(np.float32)})
        if tuple(x.shape[-2:]) == self.calib_size:
            _accumulate(self.ranges, self.observed, outs[self.num_outputs:])
            self.frames += 1
        return outs[0]

    def close(self) -> None:
        self.sess = None


def _session(probe):
    """ONNX Runtime on CPU with graph optimisations off, so every tensor is the one the graph names. The
    priority-based execution order runs each reduction as soon as its tensor exists (the default order may run
    them all at the end, keeping every tensor alive: 3.6 GB instead of 0.6 GB for BiSeNetV1 at 1024x2048), and
    without the memory arena freed tensors go back to the system instead of fragmenting a pool. The probe goes to
    ONNX Runtime through a file (:func:`.onnx_files.save_for_session`), not as serialized bytes."""
    import onnxruntime as ort

    from .onnx_files import save_for_session

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 3
    try:
        return save_for_session(probe, opts)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        raise RtsegError(f"ONNX Runtime cannot load the graph for range collection:"
                         f" {str(exc).splitlines()[0][:300]}") from None


def _accumulate(ranges: dict[str, TensorRange], observed: list[str], outs: list) -> None:
    """Fold one frame's ``(max, min, shape)`` triples into the running extremes."""
    for k, tensor in enumerate(observed):
        hi, lo, shape = outs[3 * k], outs[3 * k + 1], tuple(int(d) for d in outs[3 * k + 2])
        if 0 in shape:
            continue  # an empty tensor has no range
        hi, lo = float(hi), float(lo)
        r = ranges.get(tensor)
        if r is None:
            ranges[tensor] = TensorRange(lo, hi, shape)
        else:
            r.min_val, r.max_val = min(r.min_val, lo), max(r.max_val, hi)


def batch_frames(feeds: dict[str, np.ndarray]) -> Iterable[dict[str, np.ndarray]]:
    """One feed dict per frame of the (N, ...) arrays in ``feeds`` (views, no copies)."""
    n = next(iter(feeds.values())).shape[0]
    for i in range(n):
        yield {k: v[i:i + 1] for k, v in feeds.items()}
