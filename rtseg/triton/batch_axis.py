"""Give a bundle's ONNX graph a variable batch axis, so Triton's dynamic batcher can stack requests.

rtseg exports graphs traced at batch 1, and the simplifier folds that 1 into constants: a ``Resize`` whose output
size is given as ``sizes`` carries ``[1, C, h, w]`` with the batch baked in. Marking the input's first axis as
symbolic is then not enough (ONNX Runtime refuses to resize a batch of 3 to a batch of 1). :func:`batched_graph`
rebuilds each such ``sizes`` as ``Concat(Shape(data)[0:1], sizes[1:])`` and names the first axis of the input and
output ``batch``. The result is trusted only after :func:`check_batched` has run a batch through ONNX Runtime and
found every frame equal to running it alone; otherwise the repository keeps batch 1 and says why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BATCH = "batch"


def batched_graph(onnx_path: Path):
    """The graph at ``onnx_path`` with a symbolic batch axis (an ``onnx.ModelProto``; the file is not changed)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    for value in [v for v in graph.input if v.name not in inits] + list(graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = BATCH
    # Shapes inferred at batch 1 would contradict the new axis; ONNX Runtime re-infers them.
    del graph.value_info[:]

    start, one, end = "rtseg_batch_start", "rtseg_batch_one", "rtseg_batch_end"
    graph.initializer.extend([onnx.numpy_helper.from_array(np.array([0], np.int64), start),
                              onnx.numpy_helper.from_array(np.array([1], np.int64), one),
                              onnx.numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), end)])
    nodes = []
    for index, node in enumerate(graph.node):
        if node.op_type == "Resize" and len(node.input) > 3 and node.input[3]:
            data, sizes, tag = node.input[0], node.input[3], f"rtseg_batch_{index}"
            nodes += [helper.make_node("Shape", [data], [f"{tag}_shape"]),
                      helper.make_node("Slice", [f"{tag}_shape", start, one], [f"{tag}_n"]),
                      helper.make_node("Slice", [sizes, one, end], [f"{tag}_rest"]),
                      helper.make_node("Concat", [f"{tag}_n", f"{tag}_rest"], [f"{tag}_sizes"], axis=0)]
            node.input[3] = f"{tag}_sizes"
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def check_batched(original: Path, batched, size: tuple[int, int], batch: int = 3) -> str | None:
    """None when ``batched`` (a ModelProto) gives, for a batch of frames, what ``original`` gives frame by frame;
    else the reason it does not."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # a failed run is reported below, not printed by ONNX Runtime
    cpu = ["CPUExecutionProvider"]
    try:
        single = ort.InferenceSession(str(original), opts, providers=cpu)
        many = ort.InferenceSession(batched.SerializeToString(), opts, providers=cpu)
        name = single.get_inputs()[0].name
        frames = np.random.default_rng(0).standard_normal((batch, 3, *size)).astype(np.float32)  # (N, 3, H, W)
        together = many.run(None, {name: frames})[0]
        alone = np.concatenate([single.run(None, {name: frames[i:i + 1]})[0] for i in range(batch)])
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises several types; the reason is what matters
        return f"ONNX Runtime cannot run it on a batch of {batch}: {str(exc).splitlines()[0][:200]}"
    if together.shape != alone.shape:
        return f"a batch of {batch} gives shape {list(together.shape)}, frame by frame {list(alone.shape)}"
    if together.dtype.kind == "f":
        scale = max(1.0, float(np.abs(alone).max()))
        err = float(np.abs(together - alone).max())
        if err > 1e-4 * scale:
            return f"a batch of {batch} differs from the frames run alone by {err:.3g}"
    elif not np.array_equal(together, alone):
        return f"a batch of {batch} gives other labels than the frames run alone"
    return None
