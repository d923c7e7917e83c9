"""Export recipes (``export/*.toml``). The input normalisation each model's public checkpoints expect is declared
by its zoo entry (:attr:`rtseg.models.registry.ModelInfo.preprocessing`), not here.

A recipe is the command line written down: ``[model]`` (name, num_classes, classes, weights), ``[input]``
(size, dynamic range, mean/std/channel order/value scale), ``[export]`` (head, precision, gates, ...). The keys are
those of :class:`~rtseg.export.options.ExportOptions` (each option names its recipe key); flags given on the command
line win over the recipe.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RtsegError


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
