"""Export recipes (``export/*.toml``) and the per-family input preprocessing of the public checkpoints.

A recipe is the command line written down: ``[model]`` (name, num_classes, classes, weights), ``[input]``
(size, dynamic range, mean/std/channel order/value scale), ``[export]`` (head, precision, gates, ...). The keys are
those of :class:`~rtseg.export.options.ExportOptions` (each option names its recipe key); flags given on the command
line win over the recipe.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RtsegError
from .scenes import Preprocessing

IMAGENET = Preprocessing((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "RGB", 1.0)
# The normalisation each reference repository trains with (its released checkpoints expect it).
_PREPROCESSING = {
    # CoinCheung/BiSeNet: Cityscapes statistics, RGB in [0, 1].
    "bisenet": Preprocessing((0.3257, 0.3690, 0.3223), (0.2112, 0.2148, 0.2115), "RGB", 1.0),
    # wkentaro/pytorch-fcn (Caffe weights): BGR, raw 0..255 minus the VGG mean, no std.
    "fcn_vgg16": Preprocessing((104.00698793, 116.66876762, 122.67891434), (1.0, 1.0, 1.0), "BGR", 255.0),
    # voc-fcn-alexnet (Caffe): the FCN data layer's BGR VOC mean on raw 0..255 pixels. DIGITS' variant subtracts 116
    # instead; its checkpoint says so (FCNAlexNet.checkpoint_preprocessing), which the export prefers.
    "fcn_alexnet": Preprocessing((104.00698793, 116.66876762, 122.67891434), (1.0, 1.0, 1.0), "BGR", 255.0),
    # meetps/pytorch-semseg ICNet (converted Caffe weights): BGR, raw 0..255 minus the Pascal mean, no std.
    "icnet_ptsemseg": Preprocessing((103.939, 116.779, 123.68), (1.0, 1.0, 1.0), "BGR", 255.0),
}


def default_preprocessing(model_name: str | None, family: str | None) -> Preprocessing:
    """The normalisation the public checkpoints of ``model_name`` were trained with (ImageNet otherwise)."""
    name = (model_name or "").lower()
    for key in ("fcn_vgg16", "fcn_alexnet", "icnet_ptsemseg"):
        prefix, suffix = key.split("_", 1)
        if name.startswith(prefix) and suffix in name:
            return _PREPROCESSING[key]
    return _PREPROCESSING.get(family or "", IMAGENET)


def load_recipe(path: str | Path) -> dict:
    """Read a recipe into ``{option: value}``; relative paths in it are taken from the recipe's folder."""
    from .options import recipe_keys

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the tomli backport, a dependency there (pyproject.toml)
        import tomli as tomllib
    path = Path(path)
    if not path.is_file():
        raise RtsegError(f"recipe not found: {path}; the recipes live in export/*.toml")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RtsegError(f"recipe {path} is not valid TOML: {str(exc).splitlines()[0]}") from None
    keys = recipe_keys()
    options = {}
    for table, entries in data.items():
        if table == "about":
            continue
        if not isinstance(entries, dict):
            raise RtsegError(f"recipe {path}: top-level key {table!r} must be a table ([model], [input], [export])")
        for key, value in entries.items():
            option = keys.get((table, key))
            if option is None:
                known = ", ".join(f"{t}.{k}" for t, k in keys if t == table) or "[model], [input], [export]"
                raise RtsegError(f"recipe {path}: unknown key {table}.{key} (known: {known})")
            if option in ("weights", "onnx", "calib", "out") and isinstance(value, str) and value:
                value = str((path.parent / value).resolve()) if not Path(value).is_absolute() else value
            options[option] = value
    if "model" not in options and "onnx" not in options:
        raise RtsegError(f"recipe {path} names no model: set [model] name = \"...\"")
    return options
