"""PyTorch -> ONNX -> FP16 graph -> TensorRT engine, verified, written as a bundle (:mod:`rtseg.bundle`).

Export is a writer only: everything that reads a bundle lives in :mod:`rtseg.bundle` and :mod:`rtseg.runtime`.
Nothing heavy is imported here: ``run_export`` imports torch, onnx or TensorRT when called.
"""


def run_export(opts, say=None):
    """Build and verify a bundle (see :func:`rtseg.export.pipeline.run_export`)."""
    from .pipeline import run_export as _run

    return _run(opts, say)
