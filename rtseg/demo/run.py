"""``rtseg demo`` as a function: the shipped model and the street video, end to end, in one call.

Steps, each reused on the next run where its inputs are unchanged:

1. render the street video and its ground truth (``<out>/street/``);
2. export the shipped weights to a verified bundle (``<out>/bundle/``), calibrated on frames of that video;
3. run the video through ``rtseg run``'s pipeline into an H.264 overlay video and mask PNGs;
4. score the masks against the ground truth (``rtseg eval``'s confusion matrix and FCN metrics);
5. bench the model briefly (model only, and with transfers) next to the pipeline's own per-stage figures.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RtsegError
from ..files import write_text_atomic
from .video import LABELS_DIR, VIDEO_FILE, VideoSpec, render_video

MODEL = "fast_scnn"
NUM_CLASSES = 19
INPUT_SIZE = (288, 512)


def shipped_weights() -> Path:
    """The trained street model inside the package."""
    from .train import WEIGHTS

    if not WEIGHTS.is_file():
        raise RtsegError(f"the shipped demo weights are missing ({WEIGHTS}); reinstall rtseg, or train them with"
                         f" python -m rtseg.demo.train")
    return WEIGHTS


@dataclass
class DemoOptions:
    out: Path = Path("runs/demo")
    backend: str = "auto"
    device: str | None = None
    serve: str | None = None
    video: VideoSpec = field(default_factory=VideoSpec)
    bench_frames: int = 30
    workers: int = 2
    progress: bool = True
    weights: Path | None = None  # default: the shipped street model


def run_demo(opts: DemoOptions, say=print) -> dict:
    """Render, export, run, score and bench; returns the summary (also written to ``<out>/demo.json``)."""
    t0 = time.perf_counter()
    out = Path(opts.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RtsegError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    timings = {}
    weights = Path(opts.weights) if opts.weights is not None else shipped_weights()
    say(f"rtseg demo: {MODEL} trained on the synthetic street world ({weights.name}) -> {out}")

    t = time.perf_counter()
    street = out / "street"
    render_video(street, opts.video, workers=opts.workers, progress=opts.progress, say=say)
    timings["render"] = time.perf_counter() - t

    t = time.perf_counter()
    bundle = export_bundle(out / "bundle", weights, street / VIDEO_FILE, say)
    timings["export"] = time.perf_counter() - t

    from ..runtime import load
    from ..video import run_pipeline

    t = time.perf_counter()
    with load(bundle, backend=opts.backend, device=opts.device) as seg:
        describe = seg.describe()
        say(f"  run        {describe.get('backend')} on {describe.get('device')}"
            f" ({describe.get('provider') or describe.get('graph')})")
        started = {}

        def on_start(outputs: dict) -> None:
            started.update(outputs)
            if outputs.get("serve"):
                say(f"  browser    {outputs['serve']}  (live while the video runs)")

        from ..video.legend import Picture

        summary = run_pipeline(seg, str(street / VIDEO_FILE), save=out / "overlay.mp4", save_masks=out / "masks",
                               serve=opts.serve, progress=opts.progress, on_start=on_start,
                               picture=Picture.for_segmenter(seg))  # the legend of the 7 trained classes
        timings["run"] = time.perf_counter() - t
        t = time.perf_counter()
        accuracy = score_masks(out / "masks", street / LABELS_DIR, seg.num_classes, seg.class_names)
        timings["eval"] = time.perf_counter() - t
        t = time.perf_counter()
        bench = quick_bench(seg, street / VIDEO_FILE, opts.bench_frames) if opts.bench_frames else {}
        timings["bench"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    result = {
        "video": str(street / VIDEO_FILE), "labels": str(street / LABELS_DIR), "bundle": str(bundle),
        "weights": str(weights),
        "overlay": summary.outputs.get("save", {}).get("path"), "masks": str(out / "masks"),
        "serve": started.get("serve"), "frames": summary.frames, "rendered_frames": opts.video.frames,
        "runtime": describe, "pipeline": summary.to_dict(), "accuracy": accuracy, "bench": bench,
        "held_out": _held_out_figures(weights), "seconds": {k: round(v, 2) for k, v in timings.items()},
    }
    path = out / "demo.json"
    write_text_atomic(path, json.dumps(result, indent=1, default=str) + "\n")
    result["summary_file"] = str(path)
    return result


def export_bundle(folder: Path, weights: Path, calib: Path, say) -> Path:
    """The shipped weights as a verified bundle; an existing bundle of the same weights and size is reused."""
    from ..bundle import FAILED_MANIFEST, MANIFEST, read_manifest
    from ..files import sha256_file

    sha = sha256_file(weights)
    if (folder / MANIFEST).is_file():
        try:
            info = read_manifest(folder)
            same = info.model.source.get("weights_sha256") == sha and info.inputs.opt == tuple(INPUT_SIZE)
        except RtsegError:
            same = False
        if same:
            say(f"  bundle     {folder}  reused")
            record_trained_classes(folder)
            return folder
    from ..export.pipeline import ExportOptions, run_export

    opts = ExportOptions(out=folder, model=MODEL, weights=weights, num_classes=NUM_CLASSES, input_size=INPUT_SIZE,
                         calib=calib, calib_frames=4, classes="cityscapes",
                         command=f"rtseg export --model {MODEL} --weights {weights} --num-classes {NUM_CLASSES}"
                                 f" --input-size {INPUT_SIZE[0]}x{INPUT_SIZE[1]} --calib {calib} --out {folder}")
    result = run_export(opts, say=lambda line: say("  " + line))
    if not result.passed:
        raise RtsegError(f"the demo bundle failed verification; see {folder / FAILED_MANIFEST}")
    record_trained_classes(folder)
    return folder


def record_trained_classes(folder: Path) -> None:
    """The classes the street model was trained on (7 of its 19 outputs) as ``model.source.classes_trained``, so
    legends, the browser view and eval list those, not every Cityscapes class."""
    from ..bundle import MANIFEST
    from ..files import write_json
    from .world import CLASSES

    doc = json.loads((folder / MANIFEST).read_text())
    trained = [CLASSES[i] for i in sorted(CLASSES)]
    if doc["model"].get("source", {}).get("classes_trained") != trained:
        doc["model"].setdefault("source", {})["classes_trained"] = trained
        write_json(folder / MANIFEST, doc)


def score_masks(masks: Path, labels: Path, num_classes: int, class_names: list[str]) -> dict:
    """mIoU and per-class IoU of the pipeline's masks against the rendered ground truth."""
    import cv2

    from ..eval.metrics import ConfusionMatrix, scores

    truth = sorted(labels.glob("*.png"))
    cm = ConfusionMatrix(num_classes, ignore_index=255)
    for gt_path in truth:
        pred_path = masks / gt_path.name
        pred = cv2.imread(str(pred_path), cv2.IMREAD_UNCHANGED)
        if pred is None:
            raise RtsegError(f"no mask {pred_path} for {gt_path}; the run wrote fewer frames than the video holds")
        cm.update(cv2.imread(str(gt_path), cv2.IMREAD_UNCHANGED), pred, where=gt_path.name)
    s = scores(cm.matrix)
    report = s.as_dict(class_names)
    report["frames"] = len(truth)
    report["class_iou"] = {row["name"]: row["iou"] for row in report["per_class"] if row["iou"] is not None}
    del report["per_class"]
    return report


def quick_bench(seg, video: Path, frames: int) -> dict:
    """Model only and model + transfers on a few decoded frames of the video (``rtseg bench``'s tiers a and b)."""
    from ..bench.report import latency_stats
    from ..bench.tiers import Measurement, model_only, with_transfers
    from ..eval.frames import FrameSet

    host = [image for _, (_, image) in zip(range(8), FrameSet(video, None))]
    out = {}
    for tier, fn, arg in (("model only", model_only, host[0]), ("model + transfers", with_transfers, host)):
        m = Measurement(str(video), seg.describe().get("backend", ""), tier, tuple(INPUT_SIZE),
                        tuple(host[0].shape[:2]))
        fn(seg, arg, m, frames, 5, lambda: None)
        stats = latency_stats(m.latencies)
        out[tier] = {"fps": m.throughput, **stats}
    return out


def _held_out_figures(weights: Path) -> dict | None:
    figures = weights.with_suffix(".json")
    try:
        return json.loads(figures.read_text()).get("held_out")
    except (OSError, ValueError):
        return None
