"""The README's ``rtseg bench`` figures: Fast-SCNN (19 classes, untrained weights) on the CPU, ONNX Runtime and
PyTorch, network inputs 256x512 and 512x1024, 720x1280 synthetic street video, three tiers and the naive row.

    python benchmarks/bench.py [--frames 30] [--warmup 5]
        # exports the bundle into a temporary folder, runs rtseg bench, prints the table and writes
        # benchmarks/results/bench-<host>.json (bench.json: every sample and the machine+versions stamp)
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtseg.cli import main


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
        results = ROOT / "benchmarks" / "results"
        results.mkdir(exist_ok=True)
        target = results / f"bench-{socket.gethostname().split('.')[0]}.json"
        shutil.copyfile(out / "bench.json", target)
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
