"""Soak of ``rtseg run`` with every sink on: a long video (default 10,000 frames) through the mp4, mask PNGs (raw
and colour), stats and browser-view sinks, in this process, RSS sampled every 0.25 s. The claims (issue #20):
RSS flat after warm-up (the last quarter's median within 10% of the second quarter's) and every frame in every
output (masks on disk, frames in the mp4 by ffprobe, stats lines).

    python benchmarks/soak.py [--frames 10000] [--size 64x96]   # writes benchmarks/results/soak-<host>.json
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import Span, machine_stamp, save_results  # noqa: E402

from rtseg.sizes import read_size  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=10_000)
    p.add_argument("--size", default="64x96", help="HxW of the video's frames")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/soak-<host>.json)")
    args = p.parse_args(argv)
    from rtseg.cli import main as rtseg_main
    from rtseg.export.pipeline import ExportOptions, run_export
    from tests.conftest import STREET_WEIGHTS
    from tests.video.media import make_video

    stamp = machine_stamp()
    hw = read_size(args.size, "--size")
    with tempfile.TemporaryDirectory(prefix="rtseg-soak-") as tmp:
        tmp = Path(tmp)
        bundle = tmp / "bundle"
        assert run_export(ExportOptions(out=bundle, model="fast_scnn", weights=STREET_WEIGHTS, num_classes=19,
                                        input_size=(64, 96)), say=lambda line: None).passed
        t0 = time.monotonic()
        video = make_video(tmp / "long.mp4", args.frames, hw)
        print(f"video: {args.frames} frames {hw[0]}x{hw[1]} in {time.monotonic() - t0:.0f} s", flush=True)
        out = tmp / "out"
        out.mkdir()
        samples: list[tuple[float, float]] = []
        done = threading.Event()

        def sample():
            while not done.wait(0.25):
                samples.append((time.monotonic(), rss_mb()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with Span() as span:
            code = rtseg_main(["run", str(bundle), str(video), "--save", str(out / "o.mp4"), "--save-masks",
                               str(out / "masks"), "--colour-masks", "--stats", str(out / "stats.jsonl"),
                               "--serve", "0", "--quiet", "--lossless"])
        done.set()
        sampler.join()
        masks = sum(1 for _ in (out / "masks").glob("*.png"))
        colour = sum(1 for _ in (out / "masks" / "colour").glob("*.png"))
        stats_lines = len((out / "stats.jsonl").read_text().splitlines()) - 1  # the summary is last
        probe = subprocess.run([shutil.which("ffprobe") or "ffprobe", "-v", "error", "-count_frames",
                                "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(out / "o.mp4")],
                               capture_output=True, text=True)
        mp4_frames = int(probe.stdout.strip() or 0)
    rss = np.array([m for _, m in samples])
    q = max(len(rss) // 4, 1)
    early, late = float(np.median(rss[q:2 * q])), float(np.median(rss[-q:]))
    growth = late / early - 1
    every = masks == colour == stats_lines == mp4_frames == args.frames
    result = {"machine": stamp, "frames": args.frames, "size": list(hw), "exit": code, "wall_s": span.wall,
              "cpu_s": span.cpu, "others_cpu_share": span.others_cpu_share, "rss_mb_warm": early,
              "rss_mb_end": late, "rss_mb_max": float(rss.max()), "rss_growth": growth,
              "outputs": {"masks": masks, "colour_masks": colour, "stats_lines": stats_lines, "mp4_frames": mp4_frames},
              "every_frame_in_every_output": every, "rss_flat": growth <= 0.10,
              "rss_samples": [[round(t - samples[0][0], 2), round(m, 1)] for t, m in samples[::4]]}
    print(f"{args.frames} frames in {span.wall:.0f} s (others held {span.others_cpu_share:.0%} of the CPUs);"
          f" RSS {early:.0f} -> {late:.0f} MB after warm-up ({growth:+.1%}), max {rss.max():.0f} MB;"
          f" masks {masks}, colour {colour}, stats {stats_lines}, mp4 {mp4_frames}: "
          f"{'every frame in every output' if every else 'FRAMES MISSING'}")
    save_results("soak", result, stamp["host"], args.out)
    return 0 if code == 0 and every and growth <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
