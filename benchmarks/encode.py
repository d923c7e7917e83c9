"""The H.264 sink's cost and quality per libx264 preset: CPU ms per 1080p frame and PSNR of the saved video.

Frames are what ``rtseg run --save`` writes: street-like scenes (rtseg.scenes) with a segmentation overlay drawn
by the runtime's own overlay (alpha 0.5), panning sideways so motion estimation has work. Each preset encodes the
same frames through rtseg's own writer (rtseg.video.sinks.VideoFileSink, one encoder thread, CRF 23); the file is
decoded again and compared (PSNR over all pixels and channels, BGR) with each frame after its yuv420p conversion,
the encoder's own loss (``psnr_db``), and with the frame as given (``psnr_vs_bgr_db``: the 4:2:0 chroma loss of the
overlay's colour edges included). The ``--save-quality`` levels map to presets chosen from this table.

    python benchmarks/encode.py [--frames 48]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Span, machine_stamp, save_results  # noqa: E402

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "medium")


def frames(count: int) -> list[np.ndarray]:
    from rtseg.bundle.classes import CITYSCAPES
    from rtseg.scenes import synthetic_scenes

    scenes = synthetic_scenes(2, 1080, 2400)[..., ::-1]  # BGR, wider than 1080p to pan across
    palette = np.array([c for _, c in CITYSCAPES], np.uint8)[:, ::-1]
    out = []
    for i in range(count):
        x = (i * 11) % 480
        img = np.ascontiguousarray(scenes[(i // 24) % 2][:, x:x + 1920])
        labels = (img[..., 1] // 40).astype(np.int64) % len(palette)  # a label map that follows the picture
        out.append(((img.astype(np.uint16) + palette[labels]) // 2).astype(np.uint8))
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def encode(images: list[np.ndarray], path: Path, preset: str) -> dict:
    import av

    from rtseg.video.sinks import VideoFileSink

    sink = VideoFileSink(path, 30, preset=preset, threads=1)
    with Span() as span:
        for image in images:
            sink.write(SimpleNamespace(overlay=image, frame=image))
        sink.close()
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    import cv2

    # against each frame after the yuv420p conversion (the loss every yuv420p encoder starts from), and the raw frame
    i420 = [cv2.cvtColor(cv2.cvtColor(a, cv2.COLOR_BGR2YUV_I420), cv2.COLOR_YUV2BGR_I420) for a in images]
    scores = [psnr(a, b) for a, b in zip(i420, decoded)]
    raw = [psnr(a, b) for a, b in zip(images, decoded)]
    return {"cpu_ms_per_frame": 1e3 * span.cpu / len(images), "wall_ms_per_frame": 1e3 * span.wall / len(images),
            "others_cpu_share": span.others_cpu_share, "psnr_db": float(np.mean(scores)),
            "psnr_worst_db": float(np.min(scores)), "psnr_vs_bgr_db": float(np.mean(raw)), "bytes_per_frame": path.stat().st_size / len(images),
            "frames": len(decoded)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    images = frames(args.frames)
    results = {"machine": machine_stamp(), "size": [1080, 1920], "crf": 23, "threads": 1, "presets": {}}
    with tempfile.TemporaryDirectory(prefix="rtseg-encode-") as tmp:
        for preset in PRESETS:
            r = results["presets"][preset] = encode(images, Path(tmp) / f"{preset}.mp4", preset)
            print(f"{preset:<10} {r['cpu_ms_per_frame']:6.1f} CPU ms/frame  PSNR {r['psnr_db']:.2f} dB"
                  f" (worst {r['psnr_worst_db']:.2f}; vs BGR {r['psnr_vs_bgr_db']:.2f})  {r['bytes_per_frame'] / 1024:.0f} KiB/frame")
    save_results("encode", results, out=args.out)


if __name__ == "__main__":
    main()
