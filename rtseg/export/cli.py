"""``rtseg export``: checkpoint or ONNX -> verified ONNX, FP16 ONNX and TensorRT engine bundle.

The flags are generated from :class:`~rtseg.export.options.ExportOptions` (one definition for the parser, the
recipes and the manifest's rebuild command). Values are read and range-checked by the options model, not by
argparse, so every mistake is one ``rtseg: error:`` line. Argument definitions import nothing heavy; :func:`run`
imports torch/onnx/onnxruntime when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..sizes import parse_range as parse_range, parse_size as parse_size
from .options import option_fields

_GROUPS = ("source", "input", "output", "verification and build")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("examples:\n"
                     "  rtseg export --model fast_scnn --weights fast_scnn_citys.pth --input-size 1024x2048"
                     " --out bundles/fast_scnn\n"
                     "  rtseg export --onnx unet.onnx --num-classes 2 --input-size 256x256 --out bundles/unet\n"
                     "  rtseg export export/bisenetv1.toml --weights model_final_v1_city_new.pth")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("recipe", nargs="?", help="an export recipe (export/*.toml); flags given here win over it")
    groups = {name: parser.add_argument_group(name) for name in _GROUPS}
    for f in option_fields():
        spec = f.metadata["cli"]
        if spec.switch:
            groups[spec.group].add_argument(spec.flag, dest=f.name, action="store_true", default=None, help=spec.help)
        else:
            groups[spec.group].add_argument(spec.flag, dest=f.name, metavar=spec.metavar, help=spec.help,
                                            **({"nargs": spec.nargs} if spec.nargs else {}))


def options_from_args(args):
    """Merge the recipe (if any) and the flags into a checked :class:`~rtseg.export.options.ExportOptions`."""
    from .options import options_from
    from .recipes import load_recipe

    recipe = load_recipe(args.recipe) if args.recipe else {}
    flags = {f.name: getattr(args, f.name, None) for f in option_fields()}
    if args.recipe and not recipe.get("out") and not flags.get("out"):
        recipe["out"] = str(Path("bundles") / Path(args.recipe).stem)
    return options_from(recipe, flags)


def run(args) -> int:
    from .allocator import reuse_freed_memory
    from .pipeline import run_export

    reuse_freed_memory()  # this process exists for the export: let it reuse what it frees
    opts = options_from_args(args)
    opts.command = opts.rebuild_command()  # the manifest's rebuild command
    result = run_export(opts)
    return 0 if result.passed else 1
