"""The README's ``rtseg bench`` figures: Fast-SCNN (19 classes, untrained weights) on the CPU, ONNX Runtime and
PyTorch, network inputs 256x512 and 512x1024, 720x1280 synthetic street video, three tiers and the naive row.

    python benchmarks/bench.py [--frames 30] [--warmup 5]
        # exports the bundle into a temporary folder, runs rtseg bench, prints the table and writes
        # benchmarks/results/bench-<host>.json (bench.json: every sample and the machine+versions stamp)
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import save_results  # noqa: E402

from rtseg.cli import main  # noqa: E402


def tier_order(rows: list[dict]) -> list[str]:
    """The timing claims tests/bench no longer make (shared cores make them flaky): what (b) adds beyond inference
    is below what (c) adds, and the fastest frame of (a) <= (b) <= (c) (10% + 0.3 ms slack). One line per row."""
    by = {(r["backend"], r["input"], r["tier"]): r for r in rows}
    lines = []
    for backend, size in sorted({(r["backend"], r["input"]) for r in rows}):
        if not all((backend, size, t) in by for t in "abc"):
            continue
        a, b, c = (by[(backend, size, t)] for t in "abc")
        beyond_b, beyond_c = b["mean_ms"] - b["stages_ms"]["infer"], c["mean_ms"] - c["stages_ms"]["infer"]
        grows = 0 < beyond_b < beyond_c
        ordered = a["min_ms"] <= 1.1 * b["min_ms"] + 0.3 and b["min_ms"] <= 1.1 * c["min_ms"] + 0.3
        lines.append(f"tier order {backend} {size}: beyond inference b {beyond_b:.2f} < c {beyond_c:.2f} ms"
                     f" {'holds' if grows else 'FAILS'}; fastest a <= b <= c {'holds' if ordered else 'FAILS'}")
    return lines


def run() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="rtseg-bench-") as tmp:
        bundle, out = Path(tmp) / "fast_scnn", Path(tmp) / "out"
        code = main(["export", "--model", "fast_scnn", "--num-classes", "19", "--input-size", "512x1024",
                     "--dynamic", "256x512:512x1024", "--out", str(bundle)])
        if code:
            return code
        code = main(["bench", str(bundle), "--backend", "onnxruntime,torch", "--device", "cpu", "--size", "256x512",
                     "--size", "512x1024", "--frame-size", "720x1280", "--frames", str(args.frames),
                     "--warmup", str(args.warmup), "--out", str(out)])
        if code:
            return code
        # bench.json as rtseg bench wrote it (its machine stamp included), under the host's short name
        result = json.loads((out / "bench.json").read_text())
        result["tier_order"] = tier_order(result["rows"])
        for line in result["tier_order"]:
            print(line)
        save_results("bench", result, socket.gethostname().split(".")[0])
    return 0


if __name__ == "__main__":
    sys.exit(run())
