"""ONNX graphs handled through files, so that a big graph is held in memory about once at a time.

Every in-memory step on an ONNX ``ModelProto`` costs the graph's size again: ``SerializeToString`` makes a bytes
copy, ONNX's shape inference and checker parse another in C++ and hand back a third, and ONNX Runtime parses the
bytes once more before it builds its own tensors. For FCN-VGG16 (540 MB of weights) those copies took an export
to 7.6 GB. Done on files instead, shape inference runs in C++ from file to file, a session loads from the path
(measured for FCN-8s: 0.9 GB at the session's start instead of 2.1 GB from a loaded model), and what Python holds
can be let go before the next step.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def infer_shapes_file(src: Path, dst: Path, **kwargs) -> None:
    """ONNX shape inference from ``src`` to ``dst`` (may be the same file), in C++: no Python copy of the graph."""
    import onnx

    onnx.shape_inference.infer_shapes_path(str(src), str(dst), **kwargs)


def load_with_shapes(path: Path, **kwargs):
    """The graph at ``path`` with ONNX's shape inference applied, loaded once (the inference runs file to file).
    Weights kept in external data files beside ``path`` are read from there."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    with tempfile.TemporaryDirectory(prefix="rtseg-shapes-") as tmp:
        inferred = Path(tmp) / "inferred.onnx"
        infer_shapes_file(Path(path), inferred, **kwargs)
        model = onnx.load(str(inferred), load_external_data=False)
    load_external_data_for_model(model, str(Path(path).resolve().parent))
    return model


def save_with_external_data(src: Path, dst: Path) -> Path:
    """A copy of the graph at ``src`` at ``dst``, its weights in ``<dst name>.data`` beside it; returns ``dst``.

    A reader that loads ``dst`` without external data (``onnx.load(..., load_external_data=False)``) then holds the
    graph's structure only."""
    import onnx

    model = onnx.load(str(src))
    onnx.save(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
              location=f"{Path(dst).name}.data", size_threshold=1024)
    return Path(dst)


def session_from_file(path: Path, opts):
    """An ONNX Runtime CPU session read from ``path`` (no bytes copy of the graph in Python)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def save_for_session(model, opts):
    """An ONNX Runtime CPU session of ``model``, loaded from a temporary file: the caller may then let ``model`` go
    and keep only the session (a session from ``SerializeToString`` bytes holds the bytes, the parsed graph and the
    tensors at once)."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="rtseg-session-") as tmp:
        path = Path(tmp) / "graph.onnx"
        onnx.save(model, str(path))
        return session_from_file(path, opts)
