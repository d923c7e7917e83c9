"""A bundle as a Triton Inference Server model repository (``rtseg triton BUNDLE DIR``).

Needs the ``triton`` extra (tritonclient, for Triton's own ModelConfig protobuf) and onnx/onnxruntime for the
ONNX graph; never Ray. Nothing heavy is imported here.
"""


def write_repository(opts, say=None):
    """Write the model directory for a bundle (see :func:`rtseg.triton.repository.write_repository`)."""
    from .repository import write_repository as _write

    return _write(opts, say)
