"""Peak-memory estimate of an export, checked against what the machine (or the process's limits) can give.

An export holds the verification frames and their reference outputs for its whole run (the PyTorch model only until
its graph is exported), and on top of that runs one network at a time (PyTorch for the reference, ONNX Runtime for
each graph and for the FP16 ranges) or works on one graph's copies (:data:`WEIGHT_COPIES`).
So its peak is about: what the process holds now + frames + reference outputs + the largest single inference,
whose activations come from walking the network once on the ``meta`` device (no data, no memory) at the largest
size and keeping the most bytes alive at any moment. Where that will not fit, the export stops with one line
saying so and what to do, before the slow steps, instead of being killed by the kernel half way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import RtsegError
from ..machine import available_memory

log = logging.getLogger(__name__)

GB = 1e9
# Fixed costs on top of the activations: ONNX Runtime/ModelOpt modules and session state, allocator slack.
RUNTIME_OVERHEAD = 400e6
# Copies of the weights alive at once at the worst step: ModelOpt AutoCast's FP16 conversion, which holds the graph it
# loaded, its working copy, the copy its name maps still point to and one in flight while it infers types through a
# file; every other step holds about two (rtseg.export.onnx_files). Measured on FCN-VGG16 (540 MB of weights): 3.8 GB
# peak, 3.0 GB above the process at the check; this estimate says 3.7 GB above it.
WEIGHT_COPIES = 5
# Activation bytes times this: ONNX Runtime's and PyTorch's kernels need scratch space beyond the live tensors.
ACTIVATION_FACTOR = 1.5


@dataclass
class MemoryEstimate:
    """Bytes the export will need beyond what the process holds now, by part, and what is available."""

    activations: int  # the largest live set of one inference, at the largest input size
    weights: int
    frames: int  # verification/calibration frames, normalised float32
    outputs: int  # reference and candidate outputs, labels, one frame's upsampled logits
    available: int
    limited_by: str
    size: tuple[int, int]

    @property
    def needed(self) -> int:
        return int(ACTIVATION_FACTOR * self.activations + WEIGHT_COPIES * self.weights + self.frames
                   + self.outputs + RUNTIME_OVERHEAD)

    def text(self) -> str:
        return (f"memory: about {self.needed / GB:.1f} GB more needed (activations {self.activations / GB:.2f} GB"
                f" at {self.size[0]}x{self.size[1]}, weights {self.weights / GB:.2f} GB, frames"
                f" {self.frames / GB:.2f} GB, outputs {self.outputs / GB:.2f} GB);"
                f" {self.available / GB:.1f} GB available ({self.limited_by})")

    def check(self) -> None:
        """A one-line :class:`RtsegError` where the estimate exceeds what is available."""
        if self.needed > self.available:
            raise RtsegError(
                f"this export needs about {self.needed / GB:.1f} GB of memory at {self.size[0]}x{self.size[1]}"
                f" but {self.available / GB:.1f} GB is available ({self.limited_by}); use fewer --calib-frames,"
                f" a smaller --input-size (or --dynamic maximum), or a machine with more memory")


def estimate_export(frame_sizes: dict[tuple[int, int], int], num_classes: int, output_kind: str,
                    activations: int, weights: int, output_stride: int = 8) -> MemoryEstimate:
    """The estimate for frames of ``frame_sizes`` ((H, W) -> count) and a network whose largest inference
    keeps ``activations`` bytes alive and whose weights take ``weights`` bytes."""
    frames = sum(n * 3 * h * w * 4 for (h, w), n in frame_sizes.items())
    outputs = 0
    for (h, w), n in frame_sizes.items():
        per_frame = 2 * h * w * 8  # reference and candidate labels, int64
        if output_kind == "logits":
            per_frame += 2 * num_classes * -(-h // output_stride) * -(-w // output_stride) * 4
        outputs += n * per_frame
    h, w = max(frame_sizes, key=lambda s: s[0] * s[1])
    outputs += 2 * num_classes * h * w * 4  # one frame's logits upsampled to input size, and the argmax's scratch
    available, limited_by = available_memory()
    return MemoryEstimate(int(activations), int(weights), frames, outputs, available, limited_by, (h, w))


def torch_activation_peak(model, head: str, size: tuple[int, int]) -> int:
    """Most bytes of tensors alive at once in one forward of ``model`` at ``size`` (batch 1), on ``meta``.

    The network runs on a ``meta`` copy (shapes only, no memory); a dispatch mode adds each new tensor's bytes
    when an op makes it and subtracts them when Python frees it, as PyTorch's allocator would.
    """
    import copy
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class LiveBytes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.live = self.peak = 0

        def _free(self, nbytes: int) -> None:
            self.live -= nbytes

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and not t._is_view():
                    nbytes = t.numel() * t.element_size()
                    self.live += nbytes
                    weakref.finalize(t, self._free, nbytes)
            self.peak = max(self.peak, self.live)
            return out

    meta = copy.deepcopy(model).to("meta").eval()
    x = torch.empty((1, 3, *size), device="meta")
    counter = LiveBytes()
    with torch.inference_mode(), counter:
        y = meta.forward_lowres(x) if head == "logits" and hasattr(meta, "forward_lowres") else meta(x)
        del y
    return counter.peak + 3 * size[0] * size[1] * 4


def onnx_activation_peak(path: Path, input_name: str, size: tuple[int, int]) -> int:
    """Most bytes alive at once when the graph at ``path`` runs in node order at ``size`` (batch 1).

    Shapes from ONNX shape inference with the input fixed to ``size``; a tensor whose shape stays unknown is
    counted as large as the largest input of the node that makes it.
    """
    import numpy as np
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    for inp in graph.input:
        if inp.name == input_name:
            for d, v in zip(inp.type.tensor_type.shape.dim, (1, 3, *size)):
                d.ClearField("dim_param")
                d.dim_value = v
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    graph = model.graph
    nbytes: dict[str, int] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if vi.name not in inits and dims and all(d.HasField("dim_value") for d in dims):
            item = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)).itemsize
            nbytes[vi.name] = int(np.prod([d.dim_value for d in dims])) * item
    last_use: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for t in node.input:
            last_use[t] = i
    for o in graph.output:
        last_use[o.name] = len(graph.node)
    live = {input_name: nbytes.get(input_name, 3 * size[0] * size[1] * 4)}
    peak = sum(live.values())
    for i, node in enumerate(graph.node):
        largest_in = max((live.get(t, 0) for t in node.input), default=0)
        for t in node.output:
            if t:
                live[t] = nbytes.get(t, largest_in)
        peak = max(peak, sum(live.values()))
        for t in [*node.input, *node.output]:
            if t in live and last_use.get(t, -1) <= i:
                del live[t]
    return peak


def network_memory(model, onnx_path: Path | None, input_name: str, head: str,
                   size: tuple[int, int]) -> tuple[int, int] | None:
    """(activation peak, weight bytes) of a PyTorch model or, without one, of the ONNX graph at ``onnx_path``;
    None where the network cannot be walked without data (the estimate is then skipped, with a debug note)."""
    try:
        if model is not None:
            return torch_activation_peak(model, head, size), weight_bytes_torch(model)
        return onnx_activation_peak(Path(onnx_path), input_name, size), weight_bytes_onnx(Path(onnx_path))
    except Exception as exc:  # noqa: BLE001 - an estimate must never stop an export that may well fit
        log.debug("memory estimate skipped: %s", str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        return None


def weight_bytes_torch(model) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def weight_bytes_onnx(path: Path) -> int:
    return Path(path).stat().st_size
