"""Multi-scale + flip inference on the demo's labelled street video: mIoU and CPU time per frame, with and without.

The demo's trained Fast-SCNN (rtseg/demo/weights/fast_scnn_street.pth) exported with --dynamic (the demo's own
bundle is fixed at 288x512, which cannot change scale), run on every frame of runs/demo/street/street.mp4 (made by
``rtseg demo``) in each configuration, the configurations taking turns frame by frame so that other jobs on the
machine weigh on each alike. Per configuration: mIoU and per-class IoU against the rendered ground truth (the
demo's own scoring: ignore 255, classes absent from truth and prediction left out), process CPU seconds and wall
seconds per frame, the stage means, and the other processes' share of the CPUs meanwhile.

    python benchmarks/multiscale.py [--street runs/demo/street] [--frames 120]
        # table on stdout, benchmarks/results/multiscale-<host>.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Span, machine_stamp, save_results  # noqa: E402

WEIGHTS = ROOT / "rtseg" / "demo" / "weights" / "fast_scnn_street.pth"
SIZE, DYNAMIC = "288x512", "192x352:384x672"  # the demo's input size; room for 0.75x and 1.25x of it
CONFIGS = {"single pass": {}, "flip": {"flip": True},
           "scales 0.75,1,1.25": {"scales": (0.75, 1.0, 1.25)},
           "scales 0.75,1,1.25 + flip": {"scales": (0.75, 1.0, 1.25), "flip": True}}


def export_dynamic(out: Path, calib: Path) -> Path:
    from rtseg.cli import main

    code = main(["export", "--model", "fast_scnn", "--weights", str(WEIGHTS), "--num-classes", "19", "--classes",
                 "cityscapes", "--input-size", SIZE, "--dynamic", DYNAMIC, "--calib", str(calib), "--out", str(out)])
    if code != 0:
        raise SystemExit(f"export failed ({code})")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--street", type=Path, default=ROOT / "runs" / "demo" / "street",
                        help="the demo's street folder (street.mp4 + labels/), made by rtseg demo")
    parser.add_argument("--bundle", type=Path, help="a --dynamic export of the demo weights (default: made here)")
    parser.add_argument("--frames", type=int, default=120, help="frames scored (default: the whole video, 120)")
    args = parser.parse_args()
    video, labels = args.street / "street.mp4", args.street / "labels"
    if not video.is_file() or not labels.is_dir():
        raise SystemExit(f"no demo video at {args.street}; run `rtseg demo` first (it renders runs/demo/street)")

    import cv2

    from rtseg.eval.frames import FrameSet
    from rtseg.eval.metrics import ConfusionMatrix, scores
    from rtseg.runtime import load

    with tempfile.TemporaryDirectory(prefix="rtseg-multiscale-") as tmp:
        bundle = args.bundle or export_dynamic(Path(tmp) / "fast_scnn_street_dynamic", video)
        segs = {name: load(bundle, backend="onnxruntime", device="cpu", **opts) for name, opts in CONFIGS.items()}
        names = segs["single pass"].class_names
        cms = {name: ConfusionMatrix(19, ignore_index=255) for name in segs}
        samples = {name: {"cpu": [], "wall": [], "others": [], "stages": {}} for name in segs}
        changed = {name: 0 for name in segs}
        pixels = 0
        frames = [f for _, (_, f) in zip(range(args.frames), FrameSet(video, None))]
        for seg in segs.values():  # warm: the first frame of each input size allocates
            seg.segment(frames[0])
        for index, frame in enumerate(tqdm(frames, desc="multiscale", unit="frame")):
            gt = cv2.imread(str(labels / f"{index:06d}.png"), cv2.IMREAD_UNCHANGED)
            base = None
            for name, seg in segs.items():
                with Span() as span:
                    r = seg.segment(frame)
                s = samples[name]
                s["cpu"].append(span.cpu)
                s["wall"].append(span.wall)
                if span.others_cpu_share is not None:
                    s["others"].append(span.others_cpu_share)
                for k, v in r.timings.items():
                    s["stages"].setdefault(k, []).append(v)
                cms[name].update(gt, r.labels, where=f"frame {index}")
                base = r.labels if base is None else base
                changed[name] += int((r.labels != base).sum())
            pixels += base.size
        describe = segs["scales 0.75,1,1.25 + flip"].describe()
        for seg in segs.values():
            seg.close()

    rows = {}
    base_cpu = statistics.median(samples["single pass"]["cpu"])
    for name in segs:
        sc = scores(cms[name].matrix).as_dict(names)
        s = samples[name]
        rows[name] = {
            "miou": sc["mean_iou"], "pixel_accuracy": sc["pixel_accuracy"],
            "class_iou": {row["name"]: row["iou"] for row in sc["per_class"] if row["iou"] is not None},
            "cpu_ms_median": 1e3 * statistics.median(s["cpu"]), "wall_ms_median": 1e3 * statistics.median(s["wall"]),
            "cpu_over_single": statistics.median(s["cpu"]) / base_cpu,
            "others_cpu_share": statistics.median(s["others"]) if s["others"] else None,
            "stages_ms": {k: 1e3 * float(np.mean(v)) for k, v in s["stages"].items()},
            "labels_changed_vs_single": changed[name] / pixels,
        }
    print(f"\n{len(frames)} frames {frames[0].shape[0]}x{frames[0].shape[1]}, input {SIZE} (dynamic {DYNAMIC})\n")
    print("| configuration | mIoU | pixel acc | CPU ms/frame | x single | wall ms | others' CPU share |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['miou']:.4f} | {r['pixel_accuracy']:.4f} | {r['cpu_ms_median']:.1f} |"
              f" {r['cpu_over_single']:.2f}x | {r['wall_ms_median']:.1f} | {r['others_cpu_share'] or 0:.2f} |")
    save_results("multiscale", {"machine": machine_stamp(), "video": str(video), "frames": len(frames),
                                "input_size": SIZE, "dynamic": DYNAMIC, "runtime": describe, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
