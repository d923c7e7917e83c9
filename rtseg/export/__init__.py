"""PyTorch -> ONNX -> FP16 graph -> TensorRT engine, verified, written as a bundle with an ``rtseg.json`` manifest.

Nothing heavy is imported here: ``run_export`` and ``check_engine_stamp`` import torch, onnx or TensorRT when called.
"""

from .bundle import read_manifest as read_manifest


def run_export(opts, say=None):
    """Build and verify a bundle (see :func:`rtseg.export.pipeline.run_export`)."""
    from .pipeline import run_export as _run

    return _run(opts, say)


def check_engine_stamp(bundle):
    """Raise :class:`~rtseg.errors.RtsegError` unless the bundle's engine fits this machine; return its path."""
    from .tensorrt import check_engine_stamp as _check

    return _check(bundle)
