"""What ``rtseg bench`` shows and keeps: the Markdown table, ``bench.json``, ``bench.csv`` and two PNG plots."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from ..errors import pyplot
from ..files import atomic_path, write_json
from .tiers import TIERS, Measurement

STAT_KEYS = ("min", "mean", "p50", "p90", "p95", "p99")


def latency_stats(seconds: list[float]) -> dict:
    """min / mean / p50 / p90 / p95 / p99 in milliseconds (linear-interpolated percentiles)."""
    if not seconds:
        return {"n": 0, **{k: None for k in STAT_KEYS}}
    ms = np.asarray(seconds, np.float64) * 1e3
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    return {"n": int(ms.size), "min": float(ms.min()), "mean": float(ms.mean()), "p50": float(p50),
            "p90": float(p90), "p95": float(p95), "p99": float(p99)}


def precision_of(m: Measurement) -> str:
    """fp16, fp32, int8 or bf16, from the runner's precision, the graph or the provider that ran."""
    d = m.describe
    graph, provider = str(d.get("graph", "")), str(d.get("provider", ""))
    if d.get("precision") or "int8" in graph:  # the OpenVINO runner says; an INT8 graph is INT8 on any runner
        return str(d.get("precision") or "int8")
    if m.backend == "tensorrt" or "fp16" in graph or "fp16" in provider:
        return "fp16"
    return "fp32"


def rows(measurements: list[Measurement]) -> list[dict]:
    """Flat rows with stats, stage means and the ratio to the naive row of the same bundle and size."""
    naive = {(m.bundle, m.input_size, m.frame_size): latency_stats(m.latencies)["p50"]
             for m in measurements if m.tier == "naive" and m.latencies}
    out = []
    for m in measurements:
        s = latency_stats(m.latencies)
        base = naive.get((m.bundle, m.input_size, m.frame_size))
        out.append({
            "bundle": m.bundle, "backend": m.backend, "provider": m.describe.get("provider"),
            "device": m.describe.get("device"), "graph": m.describe.get("graph"), "precision": precision_of(m),
            "tier": m.tier, "tier_name": TIERS[m.tier],
            "input": f"{m.input_size[0]}x{m.input_size[1]}", "frame": f"{m.frame_size[0]}x{m.frame_size[1]}",
            **{f"{k}_ms": s[k] for k in STAT_KEYS}, "frames": s["n"],
            "throughput_fps": m.throughput, "throughput_kind": m.throughput_kind,
            "naive_p50_over_p50": base / s["p50"] if base and s["p50"] else None,
            "stages_ms": {k: float(np.mean(v)) * 1e3 for k, v in m.stages.items()},
            "queued_p50_ms": latency_stats(m.queued)["p50"] if m.queued else None,
            "note": m.note,
        })
    return out


def _num(value, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


_HEADER = ("bundle", "backend", "prec", "input", "frame", "tier", *STAT_KEYS, "fps", "naive/this")
_LEFT = 6  # the first six columns are text (left-aligned); the figures are right-aligned


def _cells(r: dict) -> list[str]:
    fps = _num(r["throughput_fps"], 1) + (" (pipelined)" if r["throughput_kind"] == "pipelined" else "")
    ratio = "1.00x" if r["tier"] == "naive" else (_num(r["naive_p50_over_p50"]) + "x"
                                                  if r["naive_p50_over_p50"] else "-")
    return [r["bundle"], r["backend"] if r["tier"] != "naive" else "torch (naive)", r["precision"], r["input"],
            r["frame"], f"{r['tier']}: {r['tier_name']}", *(_num(r[f"{k}_ms"]) for k in STAT_KEYS), fps, ratio]


def aligned(header, body: list[list[str]], left: int, md: bool) -> list[str]:
    """Columns padded to one width each: a terminal table, or (``md``) a Markdown table that reads as one too."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)]

    def line(cells) -> str:
        padded = [str(c).ljust(w) if i < left else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return ("| " + " | ".join(padded) + " |") if md else "  ".join(padded).rstrip()

    rule = ("|" + "|".join("-" * (w + 1) + (":" if i >= left else "-") for i, w in enumerate(widths)) + "|" if md
            else "  ".join("-" * w for w in widths))
    return [line(header), rule, *(line(cells) for cells in body)]


def markdown(table_rows: list[dict], md: bool = True) -> str:
    """The table of rows (``md``: Markdown, else aligned plain columns for a terminal) and what the figures are."""
    lines = aligned(_HEADER, [_cells(r) for r in table_rows], _LEFT, md)
    lines.append("\nlatency in ms per frame, warm-up excluded: (a), (b) and naive synchronised calls; (c) the sum of"
                 " the frame's stages, decode to encode. naive/this = the naive row's p50 over this row's p50")
    queued = [r for r in table_rows if r.get("queued_p50_ms") is not None]
    if queued:
        lines.append("(c) decode to encoded including waits in the pipeline's queues, p50: " + ", ".join(
            f"{r['backend']} {r['input']} {_num(r['queued_p50_ms'])} ms" for r in queued))
    return "\n".join(lines)


CSV_FIELDS = ["bundle", "backend", "provider", "device", "graph", "precision", "tier", "tier_name", "input", "frame",
              *[f"{k}_ms" for k in STAT_KEYS], "frames", "throughput_fps", "throughput_kind", "queued_p50_ms",
              "naive_p50_over_p50",
              "stages_ms", "note"]


def write_outputs(out: Path, document: dict, table_rows: list[dict], measurements: list[Measurement]) -> list[Path]:
    write_json(out / "bench.json", document)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for r in table_rows:
        writer.writerow({**r, "stages_ms": ";".join(f"{k}={v:.3f}" for k, v in r["stages_ms"].items())})
    with atomic_path(out / "bench.csv") as tmp:
        tmp.write_text(buf.getvalue())
    plots = [out / "latency.png", out / "stages.png"]
    plot_latency(measurements, plots[0], document["machine_line"])
    plot_stages(table_rows, plots[1], document["machine_line"])
    return [out / "bench.json", out / "bench.csv", *plots]


def _pyplot():
    plt = pyplot("bench")
    return plt


def _label(m: Measurement) -> str:
    backend = "naive torch" if m.tier == "naive" else f"{m.backend} {precision_of(m)}"
    return f"{m.bundle}\n{backend} {m.input_size[0]}x{m.input_size[1]}"


def plot_latency(measurements: list[Measurement], path: Path, machine: str) -> None:
    """Every configuration's per-frame latency on one shared log axis, its tiers side by side in one group (box:
    p25-p75, whiskers: p5-p95, points beyond), one colour per tier: tiers compare at a glance."""
    plt = _pyplot()
    tiers = [t for t in TIERS if any(m.tier == t and m.latencies for m in measurements)]
    configs = list(dict.fromkeys(_config(m) for m in measurements if m.latencies))
    colours = dict(zip(tiers, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    present = {c: [t for t in tiers if any(m.tier == t and m.latencies and _config(m) == c for m in measurements)]
               for c in configs}  # each configuration's boxes centred on its row
    step = 1.0 / (len(tiers) + 1)
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.35 * max(len(configs) * len(tiers), 2)))
    for tier in tiers:
        ms = [m for m in measurements if m.tier == tier and m.latencies]
        if not ms:
            continue
        positions = [configs.index(c) + (present[c].index(tier) - (len(present[c]) - 1) / 2) * step
                     for c in map(_config, ms)]
        box = ax.boxplot([np.asarray(m.latencies) * 1e3 for m in ms], positions=positions, widths=step * 0.8,
                         **_horizontal(plt), whis=(5, 95), showmeans=True, patch_artist=True)
        for patch in box["boxes"]:
            patch.set(facecolor=colours[tier], alpha=0.6)
        ax.plot([], [], "s", color=colours[tier], label=f"{tier}: {TIERS[tier]}")
    ax.set_xscale("log")
    ax.set_yticks(range(len(configs)), configs)
    ax.set_ylim(-0.6, len(configs) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("latency per frame (ms, log scale)")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"rtseg bench: {machine}", fontsize=8)
    fig.tight_layout()
    _save(fig, path, plt)


def _config(m: Measurement) -> str:
    """A configuration across tiers: the bundle, its backend and precision and the input size (naive apart)."""
    return _label(m)


def plot_stages(table_rows: list[dict], path: Path, machine: str) -> None:
    """Stacked bars of the mean time per stage, for every row that has more than one stage."""
    plt = _pyplot()
    staged = [r for r in table_rows if len(r["stages_ms"]) > 1]
    order = ["decode", "preprocess", "infer", "postprocess", "overlay", "encode"]
    seen = list(dict.fromkeys(k for r in staged for k in r["stages_ms"]))
    names = [n for n in order if n in seen] + [n for n in seen if n not in order]
    fig, ax = plt.subplots(figsize=(10, 1.5 + 0.45 * max(len(staged), 1)))
    labels = [f"{r['bundle']} {r['backend'] if r['tier'] != 'naive' else 'naive'} {r['precision']} {r['input']}"
              f" [{r['tier']}]" for r in staged]
    left = np.zeros(len(staged))
    for name in names:
        widths = np.array([r["stages_ms"].get(name, 0.0) for r in staged])
        ax.barh(labels, widths, left=left, label=name)
        left += widths
    ax.set_xlabel("mean time per frame (ms); stages of (c) overlap in the pipeline")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    if len(staged):
        ax.set_xlim(0, float(left.max()) * 1.05 or 1.0)  # every bar whole, the naive one too
    if names:  # beside the axes, never over a bar
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.suptitle(f"rtseg bench stages: {machine}", fontsize=8)
    fig.tight_layout()
    _save(fig, path, plt)


def _save(fig, path: Path, plt) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")  # a legend beside the axes stays whole
    plt.close(fig)


def _horizontal(plt) -> dict:
    """Horizontal boxes: ``orientation=`` from matplotlib 3.10, ``vert=False`` before (deprecated since)."""
    import matplotlib

    major, minor = (int(p) for p in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}
