"""PyTorch model -> FP32 ONNX graph (checked, shape-inferred, simplified where that is safe), and checks of a
user's own ONNX graph.

The exporter is the TorchScript-based one (``dynamo=False``) by default. Measured with torch 2.13 on these models
it exports in well under a second where the dynamo exporter spends 10 s or more, both give the same graph for
dynamic H x W (``Shape``/``Resize`` arithmetic), and the pooling modules are written to trace with symbolic sizes
(``rtseg.models.pooling``). ``exporter="dynamo"`` is kept as an option.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bundle import InputSpec
from ..errors import RtsegError
from ..files import TEMP_SUFFIX
from ..files import atomic_path
from .steps import quiet_stdout

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "input"


def graph_module(model, head: str):
    """The module to export: the low-resolution logits (``head="logits"``) or int32 labels at input size."""
    import torch

    class LowResLogits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):  # (N, 3, H, W) -> (N, C, h, w)
            return self.model.forward_lowres(x)

    class Labels(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):  # (N, 3, H, W) -> (N, H, W) int32; ties go to the smaller class index
            return self.model(x).argmax(dim=1).to(torch.int32)

    return (LowResLogits() if head == "logits" else Labels()).eval()


def export_torch(model, path: Path, shapes: InputSpec, head: str, opset: int = OPSET, exporter: str = "torchscript",
                 release: Callable[[], None] | None = None, max_batch: int = 1) -> None:
    """Export ``model`` to ``path`` atomically, then check, shape-infer and (safely) simplify it.

    ``release()`` is called once the model is no longer needed, before the ONNX-side work: a caller that drops its
    own reference there frees the PyTorch weights (540 MB for FCN-VGG16) while the graph is checked and simplified.
    """
    import torch

    model.to(memory_format=torch.contiguous_format)  # the PyTorch reference may have left it channels_last
    module = graph_module(model, head)
    output = "logits" if head == "logits" else "labels"
    # The example input only drives the trace, and the simplification check runs at it: a dynamic graph is traced
    # at its smallest size (its gates then run it at every size of the profile), a quarter of the work at 1024x2048.
    size = shapes.min if shapes.dynamic else shapes.opt
    x = torch.zeros(1, 3, *size)
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer warnings
        try:
            if exporter == "dynamo":
                _export_dynamo(module, x, tmp, shapes, output, opset)
            else:
                rank = 4 if head == "logits" else 3  # (N, C, h, w) logits or (N, H, W) labels
                axes = {INPUT_NAME: {2: "height", 3: "width"},
                        output: {rank - 2: "out_height", rank - 1: "out_width"}}
                torch.onnx.export(module, (x,), str(tmp), input_names=[INPUT_NAME], output_names=[output],
                                  opset_version=opset, dynamo=False, do_constant_folding=True,
                                  dynamic_axes=axes if shapes.dynamic else None)
        except RtsegError:
            raise
        except Exception as exc:  # noqa: BLE001 - the exporters raise many types; the user needs one line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise RtsegError(f"ONNX export of {getattr(model, 'model_name', '') or type(model).__name__} failed:"
                             f" {first}") from None
        del module, model
        if release is not None:
            release()
        finalize_graph(tmp, size)
        if max_batch > 1:
            add_batch_axis(tmp, size, max_batch)


def add_batch_axis(path: Path, size: tuple[int, int], max_batch: int) -> None:
    """Give the graph at ``path`` a symbolic batch axis in place (``--max-batch``), with the Triton writer's rewrite,
    kept only when a batch run through ONNX Runtime equals its frames run alone (else one line, nothing written)."""
    import onnx

    from ..triton.batch_axis import batched_graph, check_batched

    batched = batched_graph(path)
    why = check_batched(path, batched, tuple(size), batch=min(3, max_batch))
    if why:
        raise RtsegError(f"--max-batch {max_batch}: this graph cannot take batches ({why}); export it without"
                         f" --max-batch")
    onnx.save(batched, str(path))


def _export_dynamo(module, x, tmp: Path, shapes: InputSpec, output: str, opset: int) -> None:
    import torch
    from torch.export import Dim

    dynamic = None
    if shapes.dynamic:
        dynamic = {"x": {2: Dim("height", min=shapes.min[0], max=shapes.max[0]),
                         3: Dim("width", min=shapes.min[1], max=shapes.max[1])}}
    program = torch.onnx.export(module, (x,), input_names=[INPUT_NAME], output_names=[output], opset_version=opset,
                                dynamo=True, dynamic_shapes=dynamic, external_data=False, verbose=False)
    program.save(str(tmp))


def finalize_graph(path: Path, size: tuple[int, int] | None = None) -> None:
    """onnx.checker, shape inference and onnxslim, in place.

    The simplified graph is kept only when it was run and gave the same outputs as the original at ``size`` (or the
    graph's own static size); a simplification that could not be checked is dropped like one that changed outputs.
    Checker and shape inference run on the file, in C++; the graph is in Python only while onnxslim works on it,
    and the two graphs are run one after the other from their files (:mod:`.onnx_files`).
    """
    import onnx

    from .allocator import release_memory
    from .onnx_files import infer_shapes_file

    try:
        onnx.checker.check_model(str(path), full_check=False)
        infer_shapes_file(path, path, check_type=True, strict_mode=False)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise RtsegError(f"the exported graph does not pass onnx.checker: {str(exc).splitlines()[0][:300]}") from None
    simplified = _slim(path)
    if simplified is None:
        return
    fd, candidate = tempfile.mkstemp(prefix=f".{path.name}.slim.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    os.chmod(candidate, os.stat(path).st_mode & 0o777)  # it may replace the file: keep the file's permissions
    try:
        onnx.save(simplified, candidate)
        del simplified
        release_memory()
        if _same_outputs(path, Path(candidate), size) is True:
            os.replace(candidate, path)
    finally:
        if os.path.exists(candidate):
            os.unlink(candidate)


def _slim(path: Path):
    try:
        import onnxslim
    except ModuleNotFoundError:
        log.info("onnxslim is not installed; the graph is not simplified")
        return None
    try:
        with quiet_stdout():
            return onnxslim.slim(str(path))
    except Exception as exc:  # noqa: BLE001 - simplification is optional; keep the checked graph
        log.warning("onnxslim could not simplify the graph (%s); keeping it as exported", exc)
        return None
    finally:
        _forget_slim_matches()


def _forget_slim_matches() -> None:
    """Drop the graph nodes onnxslim's fusion patterns keep from their last match.

    The patterns are module-level objects that store the nodes they matched as attributes, and through them the
    whole graph they worked on, with its weights: for FCN-VGG16, 540 MB held for the rest of the export. Only
    attributes holding onnxslim's graph objects are removed (the patterns set them anew on every match).
    """
    try:
        from onnxslim.core.pattern.registry import DEFAULT_FUSION_PATTERNS
    except Exception:  # noqa: BLE001 - another onnxslim layout: nothing known to drop
        return
    for patterns in DEFAULT_FUSION_PATTERNS.values():
        for pattern in patterns:
            for name, value in list(vars(pattern).items()):
                if type(value).__module__.startswith("onnxslim.third_party.onnx_graphsurgeon"):
                    delattr(pattern, name)


def _same_outputs(a: Path, b: Path, size: tuple[int, int] | None = None) -> bool | None:
    """Whether both graph files give the same outputs (to float rounding) on one input; None where they cannot be
    run. One session at a time, each read from its file."""
    import onnxruntime as ort

    from .allocator import release_memory
    from .onnx_files import session_from_file

    feeds = None
    outs = []
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # 2x faster to load big graphs
    opts.log_severity_level = 3
    for path in (a, b):
        try:
            sess = session_from_file(path, opts)
            if feeds is None:
                inp = sess.get_inputs()[0]
                fill = [1, 3, *(size or (64, 64))]
                shape = [d if isinstance(d, int) else fill[i] if i < len(fill) else 1 for i, d in enumerate(inp.shape)]
                feeds = {inp.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
            outs.append(sess.run(None, feeds)[0])
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types; the caller keeps the original
            log.info("the simplified graph could not be checked (%s); keeping the graph as exported",
                     str(exc).splitlines()[0][:200])
            return None
        finally:
            sess = None
            release_memory()
    scale = max(1.0, float(np.abs(outs[0]).max()))
    return outs[0].shape == outs[1].shape and float(np.abs(outs[0] - outs[1]).max()) <= 1e-4 * scale


@dataclass(frozen=True)
class GraphIO:
    """What a segmentation graph's interface says about it."""

    input_name: str
    output_name: str
    kind: str  # "logits" or "labels"
    static_hw: tuple[int, int] | None  # the input size, if fixed in the graph
    pruned: bool = False  # the graph has other outputs too; the bundle keeps only this one (``--output``)


def inspect_segmentation_graph(path: Path, num_classes: int, output: str | None = None) -> GraphIO:
    """Check that an ONNX file looks like a segmentation model: one float NCHW image input, one per-pixel output
    (``output``: the one to use of several, ``--output``)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors have several types
        raise RtsegError(f"cannot read {path} as ONNX ({type(exc).__name__}); pass a .onnx model file") from None
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    outputs = list(model.graph.output)
    listed = ", ".join(f"{o.name} {_shape_text(o)}" for o in outputs)
    if output is not None:
        picked = [o for o in outputs if o.name == output]
        if not picked:
            raise RtsegError(f"--output {output}: {path.name} has no such output; its outputs: {listed}")
        pruned, outputs = len(outputs) > 1, picked
    elif len(outputs) > 1:
        raise RtsegError(f"{path.name} has {len(outputs)} outputs: {listed}; pick the main one with --output NAME")
    else:
        pruned = False
    if len(inputs) != 1 or len(outputs) != 1:
        raise RtsegError(f"{path} is not a segmentation model: expected one image input and one output, found"
                         f" {len(inputs)} inputs and {len(outputs)} outputs")
    inp, out = inputs[0], outputs[0]
    in_dims = _dims(inp)
    if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT or len(in_dims) != 4 or in_dims[1] not in (3, None):
        raise RtsegError(f"{path} is not a segmentation model: its input {inp.name!r} must be float32 (N, 3, H, W),"
                         f" got {onnx.TensorProto.DataType.Name(inp.type.tensor_type.elem_type)} {in_dims}")
    out_dims = _dims(out)
    out_type = out.type.tensor_type.elem_type
    if len(out_dims) == 4 and out_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
        if out_dims[1] not in (num_classes, None):
            raise RtsegError(f"{path} outputs {out_dims[1]} channels but --num-classes is {num_classes}; check"
                             f" --num-classes")
        kind = "logits"
    elif len(out_dims) == 3 and out_type in (onnx.TensorProto.INT32, onnx.TensorProto.INT64):
        kind = "labels"
    else:
        raise RtsegError(f"{path} is not a segmentation model: its output {out.name!r} must be (N, classes, h, w)"
                         f" logits or (N, H, W) integer labels, got"
                         f" {onnx.TensorProto.DataType.Name(out_type)} {out_dims}")
    static = (in_dims[2], in_dims[3]) if in_dims[2] and in_dims[3] else None
    return GraphIO(inp.name, out.name, kind, static, pruned)


def _dims(value_info) -> list[int | None]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]


def _shape_text(value_info) -> str:
    """``(1, 19, 512, 512) float32``: an output as the --output error lists it (``?`` for a symbolic size)."""
    import onnx

    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]
    kind = value_info.type.tensor_type.elem_type
    return f"({', '.join(map(str, dims))}) {onnx.helper.tensor_dtype_to_np_dtype(kind) if kind else '?'}"


def keep_output(model, name: str) -> None:
    """Make ``name`` the graph's only output, in place, dropping the nodes and weights only the others needed."""
    graph = model.graph
    kept = [o for o in graph.output if o.name == name]
    del graph.output[:]
    graph.output.extend(kept)
    needed, nodes = {name}, []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            nodes.append(node)
            needed.update(node.input)
            needed.update(_subgraph_inputs(node))
    del graph.node[:]
    graph.node.extend(reversed(nodes))
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    infos = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(infos)


def _subgraph_inputs(node) -> set[str]:
    """Names an If/Loop/Scan body reads from the graph around it."""
    import onnx

    names = set()
    for attr in node.attribute:
        for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else
                    list(attr.graphs) if attr.type == onnx.AttributeProto.GRAPHS else []):
            for inner in sub.node:
                names.update(inner.input)
                names.update(_subgraph_inputs(inner))
    return names


def import_onnx(src: Path, dst: Path, size: tuple[int, int] | None = None, output: str | None = None) -> None:
    """Copy a user's ONNX graph into the bundle as one self-contained file, checked and simplified (with
    ``output``: that output only, what only the others needed left out)."""
    import onnx

    try:
        model = onnx.load(str(src))  # external data beside the file is read in
    except Exception as exc:  # noqa: BLE001
        raise RtsegError(f"cannot read {src} as ONNX ({str(exc).splitlines()[0][:200]})") from None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < OPSET:
        try:
            model = onnx.version_converter.convert_version(model, OPSET)
        except Exception as exc:  # noqa: BLE001
            raise RtsegError(f"{src} uses opset {opset} and cannot be converted to opset {OPSET} ({exc});"
                             f" re-export it with opset >= {OPSET}") from None
    if output is not None:
        keep_output(model, output)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
        finalize_graph(tmp, size)
