"""``rtseg run`` on a 1080p file against a naive single-thread loop, same Segmenter, same output frames.

The naive loop is what people write: decode a frame (PyAV) -> ``seg.segment`` -> ``seg.overlay`` -> encode it
(the same H.264 writer rtseg uses), one frame after the other on one thread. ``rtseg run`` does the same work with
each stage on its own thread (``run_pipeline(seg, video, save=...)``). Both write an mp4; their decoded frames are
compared. On a GPU the model-only FPS at 1080p is measured as well, for the "end-to-end >= 0.8x model" check.

    python benchmarks/pipeline.py [--frames 120] [--input-size 512x1024] [--bundle DIR]
    -> a table on stdout and benchmarks/results/pipeline-<host>.json (machine stamp included), with each stage's
       CPU ms per frame measured alone (where the CPU goes)

    python benchmarks/pipeline.py --before-after [--frames 120]
    -> ``rtseg run`` as it was (the FP32 graph on ONNX Runtime, the libx264 veryfast sink: --save-quality balanced)
       against its CPU defaults now (``backend="auto"``: the bundle's gated INT8 graph, on OpenVINO where installed;
       the ultrafast sink), alternating, on one INT8 bundle of the demo's trained street model; the outputs compared (PSNR of the saved videos, label
       agreement of INT8 with FP32 on the same frames); benchmarks/results/pipeline_int8-<host>.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Span, cpu_seconds, machine_stamp, save_results  # noqa: E402

from rtseg.sizes import read_size  # noqa: E402
from rtseg.video import run_pipeline  # noqa: E402


def make_1080p_video(path: Path, frames: int, fps: int = 30, seed: int = 0) -> Path:
    """Street-like synthetic scenes panning sideways, 1920x1080 H.264 (a few distinct scenes, shifted per frame)."""
    import av

    from rtseg.scenes import synthetic_scenes

    scenes = synthetic_scenes(4, 1080, 1920, seed=seed)[..., ::-1]  # RGB -> BGR
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20"}
        for i in range(frames):
            image = np.ascontiguousarray(np.roll(scenes[(i // 30) % len(scenes)], 16 * i, axis=1))
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _rates(frames: int, span: Span) -> dict:
    # cores_busy: how many cores the loop kept busy on average; on a shared machine it is capped by the others' load
    return {"frames": frames, "wall_s": span.wall, "fps": frames / span.wall, "cpu_s_per_frame": span.cpu / frames,
            "cores_busy": span.cpu / span.wall, "others_cpu_share": span.others_cpu_share}


def naive_loop(seg, video: Path, out: Path, alpha: float) -> dict:
    """read -> segment -> overlay -> write, one frame at a time on this thread."""
    import av

    from rtseg.video.sinks import VideoFileSink

    with Span() as span, av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # the same decoder settings rtseg uses
        sink = VideoFileSink(out, float(stream.average_rate))
        frames = 0
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="bgr24")
            labels = seg.segment(image).labels
            sink.write(SimpleNamespace(overlay=seg.overlay(image, labels, alpha=alpha), frame=image))
            frames += 1
        sink.close()
    return _rates(frames, span)


def rtseg_run(seg, video: Path, out: Path, alpha: float) -> dict:
    with Span() as span:
        summary = run_pipeline(seg, str(video), save=out, alpha=alpha, handle_signals=False)
    rates = _rates(summary.frames, span)
    stages = {k: round(v["p50"] * 1e3, 2) for k, v in summary.stages.items() if v.get("n")}
    return {**rates, "stage_p50_ms": stages, "segmenting": summary.segmenting}


def compare_outputs(a: Path, b: Path) -> dict:
    import av

    with av.open(str(a)) as ca, av.open(str(b)) as cb:
        diffs = [int(np.abs(fa.to_ndarray(format="bgr24").astype(np.int16)
                            - fb.to_ndarray(format="bgr24").astype(np.int16)).max())
                 for fa, fb in zip(ca.decode(video=0), cb.decode(video=0), strict=True)]
    return {"frames_compared": len(diffs), "max_abs_diff": max(diffs), "identical_frames": diffs.count(0)}


def _segment_stage_cpu(s, images: list, alpha: float, per_frame) -> dict:
    inputs = [s._preprocess(im).copy() for im in images[:2]]
    logits = s.runner.infer(inputs[0])[0]
    labels = s.segment(images[0]).labels
    return {"preprocess": per_frame(s._preprocess, images),
            "infer": per_frame(lambda i: s.runner.infer(inputs[i % 2]), range(len(images))),
            "upsample_argmax": per_frame(lambda im: s._postprocess(logits, im.shape[:2], False), images),
            "overlay": per_frame(lambda im: s.overlay(im, labels, alpha=alpha), images)}


def stage_cpu(seg, video: Path, frames: int, alpha: float) -> dict:
    """CPU ms per frame of each stage, run stage by stage over the same frames (process CPU time, so a library's
    own threads count): with the Segmenter as loaded (the naive loop) and with a one-thread copy (what each of the
    pipeline's two segment threads runs). The sink's figure includes libx264's threads and the final flush."""
    import av

    from rtseg.video.sinks import VideoFileSink

    def per_frame(fn, items) -> float:
        start = cpu_seconds()
        for item in items:
            fn(item)
        return round((cpu_seconds() - start) / len(items) * 1e3, 2)

    start = cpu_seconds()
    with av.open(str(video)) as container:
        container.streams.video[0].thread_type = "AUTO"
        decoded = [f for _, f in zip(range(frames), container.decode(video=0))]
    out = {"decode": round((cpu_seconds() - start) / len(decoded) * 1e3, 2)}
    images: list[np.ndarray] = []
    out["to_bgr"] = per_frame(lambda f: images.append(f.to_ndarray(format="bgr24")), decoded)
    copies = seg.replicas(1, 1) if hasattr(seg, "replicas") and not seg.runner.on_gpu else []
    for name, s in (("as_loaded", seg), ("one_thread", copies[0] if copies else None)):
        if s is not None:
            out[name] = _segment_stage_cpu(s, images, alpha, per_frame)
    with tempfile.TemporaryDirectory() as tmp:
        sink = VideoFileSink(Path(tmp) / "stage.mp4", 30)
        start = cpu_seconds()
        for im in images:
            sink.write(SimpleNamespace(overlay=im, frame=im))
        sink.close()
        out["sink_h264"] = round((cpu_seconds() - start) / len(images) * 1e3, 2)
    return out


def model_only_fps(seg, video: Path, frames: int) -> dict:
    """Segmenter.segment alone on decoded 1080p frames held in memory (what the GPU check compares against)."""
    import av

    with av.open(str(video)) as container:
        images = [f.to_ndarray(format="bgr24") for _, f in zip(range(frames), container.decode(video=0))]
    seg.segment(images[0])
    with Span() as span:
        for image in images:
            seg.segment(image)
    return {"frames": len(images), "fps": len(images) / span.wall}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def compare_videos(a: Path, b: Path) -> dict:
    """PSNR of b's decoded frames against a's (both lossy: the figure includes both encoders' losses)."""
    import av

    with av.open(str(a)) as ca, av.open(str(b)) as cb:
        scores = [psnr(fa.to_ndarray(format="bgr24"), fb.to_ndarray(format="bgr24"))
                  for fa, fb in zip(ca.decode(video=0), cb.decode(video=0), strict=True)]
    return {"frames_compared": len(scores), "psnr_db_mean": float(np.mean(scores)), "psnr_db_worst": min(scores)}


def label_agreement(old, new, video: Path, frames: int) -> dict:
    import av

    with av.open(str(video)) as container:
        images = [f.to_ndarray(format="bgr24") for _, f in zip(range(frames), container.decode(video=0))]
    shares = [float(np.mean(old.segment(im).labels == new.segment(im).labels)) for im in images]
    return {"frames": len(shares), "mean": float(np.mean(shares)), "worst": min(shares)}


GATE = (0.95, 0.93)  # the INT8 gate of --before-after's bundle (mean, worst frame); see before_after


def before_after(args, size) -> int:
    """rtseg run's CPU path before the INT8 round (FP32 on ONNX Runtime, veryfast sink) against its defaults now."""
    from rtseg.export.pipeline import ExportOptions, run_export
    from rtseg.runtime import load

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"making a {args.frames}-frame 1080p video ...", flush=True)
        video = make_1080p_video(tmp / "street_1080p.mp4", args.frames)
        bundle = args.bundle
        if bundle is None:
            from rtseg.demo.run import shipped_weights

            bundle = tmp / "fast_scnn"
            print(f"exporting the demo's trained Fast-SCNN at {size[0]}x{size[1]} with an INT8 graph ...", flush=True)
            # calibrated and gated on frames of another clip of the same kind (never the timed one)
            calib = make_1080p_video(tmp / "calib.mp4", 16, seed=7)
            # The demo's model was trained at 288x512 on 720p frames: at 512x1024 on 1080p frames it sees objects
            # at another scale, is unsure on more pixels, and its INT8 graph agrees 97% with FP32 here (the default
            # gate asks 98.5%). This benchmark is about speed: the gate is lowered and the agreement reported.
            run_export(ExportOptions(out=bundle, model="fast_scnn", weights=shipped_weights(), num_classes=19,
                                     input_size=size, precision="int8", calib=calib, calib_frames=16,
                                     gate_int8=GATE[0], gate_int8_worst=GATE[1]),
                       say=lambda line: print("  " + line, flush=True))
        runs: dict[str, list] = {"before": [], "after": []}
        with load(bundle, backend="onnxruntime", device="cpu", precision="fp32") as old, \
                load(bundle, device="cpu") as new:
            setups = {"before": (old, "balanced"), "after": (new, None)}
            for seg, _ in setups.values():
                seg.segment(np.zeros((1080, 1920, 3), np.uint8))  # warm-up, outside the timings
            for k in range(2):  # alternating, so that neither always runs on a warmer (or busier) machine
                for name, (seg, quality) in setups.items():
                    with Span() as span:
                        summary = run_pipeline(seg, str(video), save=tmp / f"{name}{k}.mp4", alpha=args.alpha,
                                               handle_signals=False, save_quality=quality)
                    runs[name].append(_rates(summary.frames, span))
            described = {name: seg.describe() for name, (seg, _) in setups.items()}
            agreement = label_agreement(old, new, video, min(args.frames, 30))
        outputs = compare_videos(tmp / "before0.mp4", tmp / "after0.mp4")
    best = {name: max(r, key=lambda x: x["fps"]) for name, r in runs.items()}
    results = {
        "machine": machine_stamp(),
        "setup": {"video": f"{args.frames} frames 1920x1080 H.264", "model": "fast_scnn", "input_size": list(size),
                  "before": {"runtime": described["before"], "save_quality": "balanced (libx264 veryfast)"},
                  "after": {"runtime": described["after"], "save_quality": "default (fast: libx264 ultrafast)"}},
        "runs": runs, "speedup_fps": best["after"]["fps"] / best["before"]["fps"],
        "cpu_per_frame_ratio": best["before"]["cpu_s_per_frame"] / best["after"]["cpu_s_per_frame"],
        "int8_gate": {"mean": GATE[0], "worst_frame": GATE[1]} if args.bundle is None else None,
        "label_agreement_int8_vs_fp32": agreement, "saved_video_after_vs_before": outputs,
    }
    m = results["machine"]
    print(f"machine: {m['cpu']}, {m['cores_usable']} cores, load {m['load_average'][0]:.1f}")
    for name in ("before", "after"):
        d = described[name]
        a, b = runs[name]
        print(f"{name:<7} {d['backend']} {d.get('graph')}: {best[name]['fps']:6.2f} fps (runs {a['fps']:.2f},"
              f" {b['fps']:.2f}); CPU s/frame {a['cpu_s_per_frame']:.3f}, {b['cpu_s_per_frame']:.3f}")
    print(f"after / before: {results['speedup_fps']:.2f}x fps, {results['cpu_per_frame_ratio']:.2f}x less CPU per"
          f" frame; labels INT8 vs FP32 {agreement['mean']:.2%} (worst frame {agreement['worst']:.2%}); saved video"
          f" PSNR {outputs['psnr_db_mean']:.1f} dB (worst {outputs['psnr_db_worst']:.1f})")
    save_results("pipeline_int8", results, m["host"], args.out)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--input-size", default="512x1024", help="the Fast-SCNN bundle's input size (HxW)")
    parser.add_argument("--bundle", type=Path, help="an existing bundle (default: export Fast-SCNN to a temp dir)")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--before-after", action="store_true",
                        help="rtseg run before the INT8 round (FP32, veryfast sink) against its defaults now")
    args = parser.parse_args(argv)

    from rtseg.runtime import load

    size = read_size(args.input_size, "--input-size")
    if args.before_after:
        return before_after(args, size)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = args.bundle
        if bundle is None:
            from rtseg.export.pipeline import ExportOptions, run_export

            bundle = tmp / "fast_scnn"
            print(f"exporting Fast-SCNN at {size[0]}x{size[1]} ...", flush=True)
            run_export(ExportOptions(out=bundle, model="fast_scnn", num_classes=19, input_size=size,
                                     precision="fp32", calib_frames=1), say=lambda line: None)
        print(f"making a {args.frames}-frame 1080p video ...", flush=True)
        video = make_1080p_video(tmp / "street_1080p.mp4", args.frames)
        with load(bundle, backend=args.backend, device=args.device) as seg:
            describe = seg.describe()
            seg.segment(np.zeros((1080, 1920, 3), np.uint8))  # warm-up, outside both timings
            # alternate the two so that neither always runs on a warmer (or busier) machine
            naive = naive_loop(seg, video, tmp / "naive.mp4", args.alpha)
            piped = rtseg_run(seg, video, tmp / "rtseg.mp4", args.alpha)
            naive2 = naive_loop(seg, video, tmp / "naive2.mp4", args.alpha)
            piped2 = rtseg_run(seg, video, tmp / "rtseg2.mp4", args.alpha)
            same = compare_outputs(tmp / "naive.mp4", tmp / "rtseg.mp4")
            stages = stage_cpu(seg, video, min(args.frames, 30), args.alpha)
            model = model_only_fps(seg, video, min(args.frames, 60)) if describe["device"] != "cpu" else None
    best_naive = max(naive, naive2, key=lambda r: r["fps"])
    best_piped = max(piped, piped2, key=lambda r: r["fps"])
    results = {
        "machine": machine_stamp(),  # taken after the runs: its load average is theirs
        "setup": {"video": f"{args.frames} frames 1920x1080 H.264", "model": "fast_scnn", "input_size": list(size),
                  "runtime": describe, "alpha": args.alpha, "writer": "H.264 mp4 (libx264 veryfast) via PyAV"},
        "naive_loop": [naive, naive2], "rtseg_run": [piped, piped2],
        "speedup": best_piped["fps"] / best_naive["fps"], "same_output": same,
        "stage_cpu_ms_per_frame": stages,
    }
    if model is not None:
        results["model_only"] = model
        results["end_to_end_vs_model"] = best_piped["fps"] / model["fps"]
    m = results["machine"]
    print(f"machine: {m['cpu']}, {m['cores_usable']} cores, load {m['load_average'][0]:.1f};"
          f" {describe['backend']} {describe['device']}")
    for name, a, b, best in (("naive loop", naive, naive2, best_naive), ("rtseg run", piped, piped2, best_piped)):
        print(f"{name:<12} {best['fps']:6.2f} fps  (runs: {a['fps']:.2f}, {b['fps']:.2f}); cores busy"
              f" {a['cores_busy']:.2f}, {b['cores_busy']:.2f}; CPU s/frame {a['cpu_s_per_frame']:.3f},"
              f" {b['cpu_s_per_frame']:.3f}")
    print(f"rtseg run stage p50 ms: {piped['stage_p50_ms']}")
    print(f"stage CPU ms/frame: {stages}")
    print(f"speedup      {results['speedup']:.2f}x; outputs: {same['identical_frames']}/{same['frames_compared']}"
          f" frames identical, max |diff| {same['max_abs_diff']}")
    if model is not None:
        print(f"model only   {model['fps']:.2f} fps; end-to-end / model = {results['end_to_end_vs_model']:.2f}")
    save_results("pipeline", results, m["host"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
