"""The model registry: one entry point per deployable model, as in timm.

A model file registers small builder functions with :func:`register_model`. The registry itself imports no torch,
so ``rtseg models`` can list names without building anything; the builder modules are imported on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from ..bundle.classes import DATASETS
from ..bundle.preprocessing import IMAGENET, Preprocessing
from ..errors import RtsegError

# The modules that register models. Imported lazily: they need torch.
_FAMILY_MODULES = (
    "rtseg.models.fcn",
    "rtseg.models.fcn_resnet",
    "rtseg.models.fcn_alexnet",
    "rtseg.models.bisenet",
    "rtseg.models.bisenet_faceparsing",
    "rtseg.models.fast_scnn",
    "rtseg.models.icnet",
    "rtseg.models.icnet_caffe",
)


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model without building it."""

    name: str
    family: str
    builder: Callable
    default_num_classes: int
    output_stride: int  # of the low-resolution logits, relative to the input
    size_rule: str  # the input sizes the architecture accepts, in words
    checkpoint_layout: str  # the public checkpoint layout it loads
    aliases: tuple[str, ...] = field(default=())
    #: the normalisation its public checkpoints were trained with (what a bundle records unless told otherwise)
    preprocessing: Preprocessing = IMAGENET
    #: the class set its public checkpoints were trained on (a name of :data:`rtseg.bundle.classes.DATASETS`; None:
    #: the bundle names the classes class_<i> unless told)
    classes: str | None = None


_REGISTRY: dict[str, ModelInfo] = {}
_ALIASES: dict[str, str] = {}
_loaded = False


def register_model(
    name: str,
    *,
    family: str,
    default_num_classes: int,
    output_stride: int,
    size_rule: str,
    checkpoint_layout: str,
    aliases: tuple[str, ...] = (),
    preprocessing: Preprocessing = IMAGENET,
    classes: str | None = None,
):
    """Decorator for a builder ``fn(num_classes, **kwargs) -> SegmentationModel``; ``preprocessing`` is the input
    normalisation the reference repository trains with (its released checkpoints expect it), ``classes`` the class
    set they were trained on (``"cityscapes"``, ``"voc"``, ``"celebamask"``: names and palette of the bundle)."""
    if classes is not None and classes not in DATASETS:
        raise ValueError(f"{name}: unknown class set {classes!r}")

    def wrap(fn):
        info = ModelInfo(name, family, fn, default_num_classes, output_stride, size_rule, checkpoint_layout,
                         tuple(aliases), preprocessing, classes)
        _REGISTRY[name] = info
        for alias in aliases:
            _ALIASES[alias] = name
        return fn

    return wrap


def _load_families() -> None:
    global _loaded
    if _loaded:
        return
    for module in _FAMILY_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == "torch":
                raise RtsegError("PyTorch is not installed; install it with: pip install 'rtseg[export]'") from None
            if exc.name != module:
                raise
    _loaded = True


def list_models() -> list[str]:
    """Canonical names of every registered model, sorted."""
    _load_families()
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """Registry entry for a canonical name or an alias."""
    _load_families()
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise RtsegError(f"unknown model {name!r}; run 'rtseg models' to list the {len(_REGISTRY)} available names")
    return _REGISTRY[key]


def default_preprocessing(model_name: str | None, family: str | None = None) -> Preprocessing:
    """The normalisation the public checkpoints of ``model_name`` were trained with (ImageNet for no model)."""
    return model_info(model_name).preprocessing if model_name else IMAGENET


def create_model(name: str, num_classes: int | None = None, checkpoint=None, weights: str | None = None, **kwargs):
    """Build a model in inference form (``eval()``), optionally loading a checkpoint: a file (``checkpoint``) or a
    checkpoint of the catalogue by name (``weights``, e.g. ``"celebamask-faceparsing"``; fetched once, see
    :mod:`rtseg.models.catalogue`).

    ``model(x)`` returns the main logits ``(N, C, H, W)`` at the input size; auxiliary heads are not built.
    """
    info = model_info(name)
    if weights is not None:
        if checkpoint is not None:
            raise RtsegError("pass either checkpoint (a file) or weights (a catalogue name), not both")
        checkpoint = catalogue_checkpoint(info, weights)
    if num_classes is None:
        num_classes = info.default_num_classes
    if int(num_classes) < 1:
        raise RtsegError(f"num_classes must be at least 1, got {num_classes}")
    model = info.builder(num_classes=int(num_classes), **kwargs)
    model.model_name = info.name
    if checkpoint is not None:
        from .checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint)
    return model.eval()


def catalogue_checkpoint(info: ModelInfo, weights: str, fetch: bool = True):
    """The local file of catalogue checkpoint ``weights`` for the model ``info`` (fetched on first use); with
    ``fetch=False`` only its entry, once checked that ``info`` loads it."""
    from .catalogue import catalogue_entry, fetch_checkpoint

    entry = catalogue_entry(weights)
    if entry is not None and entry.model != info.name:
        raise RtsegError(f"{entry.name} is a checkpoint of {entry.model}, not {info.name}; use --model {entry.model}")
    return fetch_checkpoint(weights) if fetch else entry
