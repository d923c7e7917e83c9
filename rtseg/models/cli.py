"""``rtseg models``: the zoo at a glance."""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--no-params", action="store_true",
                        help="skip building each model to count its parameters (faster)")


def run(args) -> int:
    from .registry import create_model, list_models, model_info

    rows = []
    for name in list_models():
        info = model_info(name)
        params = None
        if not args.no_params:
            model = create_model(name)
            params = sum(p.numel() for p in model.parameters())
        rows.append({
            "name": name, "family": info.family, "aliases": list(info.aliases), "classes": info.default_num_classes,
            "params": params, "output_stride": info.output_stride, "input_sizes": info.size_rule,
            "checkpoint_layout": info.checkpoint_layout,
        })
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    header = ("name", "family", "params", "stride", "input sizes", "loads checkpoints of")
    table = [(r["name"], r["family"], f"{r['params'] / 1e6:.2f}M" if r["params"] is not None else "-",
              f"1/{r['output_stride']}", r["input_sizes"], r["checkpoint_layout"]) for r in rows]
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0
