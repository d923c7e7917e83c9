"""Loading the checkpoints that the public reference implementations save.

Accepted: a bare state_dict; a dict nesting it under ``state_dict``, ``model``, ``model_state`` (or
``state_dict_ema``/``net``); ``module.`` prefixes from DataParallel. Keys the main logits do not use (aux heads,
ImageNet fc, unused pyramid-pooling convs) are skipped and listed at debug level. Anything else that does not fit
is an :class:`RtsegError` naming the missing, unexpected and mis-shaped keys (or modules, and the model the
checkpoint does fit: :mod:`rtseg.models.near_miss`).

Before PyTorch reads the file, :mod:`rtseg.models.file_kind` says what it really is, so an HTML page, a Git LFS
pointer, a truncated download, a TorchScript archive or a Caffe model gets one line saying what to do. Files are
read with ``weights_only=True`` only; a whole pickled model is refused with the hint to save its ``state_dict()``.
Weights holding NaN or infinity (a diverged training run) are refused, naming the first such tensor.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

import torch

from ..errors import RtsegError
from .caffe import caffe_file_kind
from .file_kind import describe, identify
from .near_miss import key_diff, mismatch_message

log = logging.getLogger(__name__)

_NESTING_KEYS = ("state_dict", "model_state", "model", "net", "state_dict_ema", "model_state_dict")


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file (``weights_only=True``) and return its unwrapped, prefix-free state_dict."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise RtsegError(f"checkpoint not found: {path}; pass the path of a .pth/.pt file")
    kind = identify(path)
    if kind.name not in ("pytorch", "pickle", "unknown"):
        raise RtsegError(f"cannot read checkpoint {describe(path, kind)}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the unpickler raises IndexError, KeyError, ... on damaged files
        raise RtsegError(_unreadable_message(path, kind, exc)) from None
    return unwrap_state_dict(obj, path)


def _unreadable_message(path: str, kind, exc: Exception) -> str:
    # PyTorch's own text is not passed on: it is long, has colour codes and suggests weights_only=False.
    classes = [c for c in re.findall(r"GLOBAL ([\w.]+)", str(exc)) if not c.startswith("torch._utils")]
    if classes:
        return (f"cannot read checkpoint {path}: it holds pickled Python objects ({classes[0]}), not only tensors: probably a whole model"
                f" saved with torch.save(model); save torch.save(model.state_dict(), path) instead (rtseg loads"
                f" weights only and never runs code from a checkpoint)")
    what = "a damaged or truncated PyTorch checkpoint" if kind.name == "pytorch" else \
        "damaged, or not a PyTorch checkpoint"
    return (f"cannot read checkpoint {path}: {what} ({type(exc).__name__} while reading); fetch it again, or save"
            f" the weights with torch.save(model.state_dict(), path)")


def unwrap_state_dict(obj, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the state_dict inside what a training script saved."""
    for _ in range(3):  # e.g. {"model": {"state_dict": ...}}
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in _NESTING_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise RtsegError(f"{source} holds no state_dict (expected a dict of tensors, or one under 'state_dict',"
                         f" 'model' or 'model_state')")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise RtsegError(f"{source} holds no tensors; is it a model checkpoint?")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    for k, v in tensors.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise RtsegError(f"{source}: weight {k!r} holds NaN or infinity (a diverged training run?); pass a"
                             f" checkpoint saved before training diverged")
    return tensors


def load_checkpoint(model, checkpoint) -> None:
    """Load a checkpoint (a path or an already-read state_dict) into ``model``, strictly for what it uses."""
    name = getattr(model, "model_name", "") or type(model).__name__
    if isinstance(checkpoint, Mapping):
        state = unwrap_state_dict(checkpoint)
        source = "checkpoint"
    elif caffe_file_kind(checkpoint):  # a .caffemodel (or a prototxt passed by mistake): see rtseg.models.caffe
        from .caffe import caffemodel_state_dict

        state, source = caffemodel_state_dict(checkpoint, model), os.fspath(checkpoint)
    else:
        source = os.fspath(checkpoint)
        if os.path.isfile(source) and identify(source).name == "caffemodel":
            raise RtsegError(f"{source} is a Caffe .caffemodel, and {name} reads PyTorch checkpoints (.pth) only;"
                             f" convert it to a PyTorch state_dict first")
        state = read_state_dict(checkpoint)
    if hasattr(model, "adapt_checkpoint"):  # another public layout of the same network (e.g. DIGITS' names)
        state = model.adapt_checkpoint(state)

    own = model.state_dict()
    diff = key_diff(own, state, getattr(model, "ignored_checkpoint_prefixes", ()))
    skipped, unexpected = diff.skipped, diff.unexpected

    if diff.missing or diff.misshaped or (unexpected and len(unexpected) >= len(own) // 2):
        raise RtsegError(mismatch_message(name, source, model, state, diff))
    if skipped:
        log.debug("%s: skipped %d checkpoint keys the main logits do not use: %s", source, len(skipped),
                  ", ".join(skipped))
    if unexpected:
        log.debug("%s: ignored %d unexpected keys: %s", source, len(unexpected), ", ".join(unexpected))

    with torch.no_grad():
        for k, v in own.items():
            if k in state:
                v.copy_(state[k].to(v.dtype))

