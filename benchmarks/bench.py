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
        save_results("bench", json.loads((out / "bench.json").read_text()), socket.gethostname().split(".")[0])
    return 0


if __name__ == "__main__":
    sys.exit(run())
