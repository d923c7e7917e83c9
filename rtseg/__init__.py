"""rtseg: real-time semantic segmentation inference.

Importing the package pulls in no heavy dependency (torch, onnxruntime, tensorrt, cuda-python): each is imported
lazily by the module that needs it.
"""

from .errors import RtsegError as RtsegError

__version__ = "0.1.0"
