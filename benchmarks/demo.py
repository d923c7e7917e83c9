"""Reproduce the demo figures and pictures in the README.

    python3 benchmarks/demo.py [--out runs/demo-readme]

Runs ``rtseg demo`` (through its Python API), then ``rtseg bench`` on the demo's bundle and video (ONNX Runtime and
PyTorch, the three tiers and the naive baseline), and writes:

- ``benchmarks/results/demo.json``: the demo summary and the machine stamp;
- ``docs/demo_overlay.png``: frame 60 of the street video beside the same frame of the overlay video;
- ``docs/demo_bench.png``: the bench's per-stage plot.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, ROOT, describe_machine, machine_stamp, save_results  # noqa: E402


def overlay_picture(video: Path, overlay: Path, index: int, dest: Path, width: int = 480) -> None:
    import av
    import cv2
    import numpy as np

    def frame(path: Path):
        with av.open(str(path)) as container:
            for i, f in enumerate(container.decode(video=0)):
                if i == index:
                    return f.to_ndarray(format="bgr24")
        raise SystemExit(f"{path} has fewer than {index + 1} frames")

    pair = [frame(video), frame(overlay)]
    h = round(pair[0].shape[0] * width / pair[0].shape[1])
    small = [cv2.resize(p, (width, h), interpolation=cv2.INTER_AREA) for p in pair]
    dest.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dest), np.concatenate(small, axis=1), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "demo-readme")
    p.add_argument("--bench-frames", type=int, default=40)
    args = p.parse_args()

    from rtseg.cli import main as rtseg_main
    from rtseg.demo.run import DemoOptions, run_demo
    from rtseg.demo.summary import summary_lines

    result = run_demo(DemoOptions(out=args.out))
    print("\n".join(summary_lines(result)), flush=True)
    stamp = machine_stamp()
    bench_out = args.out / "bench"
    code = rtseg_main(["bench", result["bundle"], "--backend", "onnxruntime,torch", "--source", result["video"],
                       "--frames", str(args.bench_frames), "--warmup", "5", "--out", str(bench_out)])
    if code:
        return code
    docs = ROOT / "docs"
    overlay_picture(Path(result["video"]), Path(result["overlay"]), 60, docs / "demo_overlay.png")
    shutil.copyfile(bench_out / "stages.png", docs / "demo_bench.png")
    record = {"machine": stamp, "machine_line": describe_machine(stamp), "demo": result,
              "bench": json.loads((bench_out / "bench.json").read_text())}
    save_results("demo", record, out=RESULTS / "demo.json")
    print(f"wrote {docs / 'demo_overlay.png'}, {docs / 'demo_bench.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
