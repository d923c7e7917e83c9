"""Runtime timings: ONNX Runtime (CPU) against PyTorch eager per family, and ``Segmenter.segment`` end to end.

1. Model only, per family at 512x1024 (batch 1, the FP32 graph of a fresh bundle against the same model in
   PyTorch eager, both on this machine's cores): median latency and the ratio. Each call also records the
   process's CPU seconds and the share of the CPUs other processes took meanwhile (``others_cpu_share``: near 0 on
   an idle machine). Beside other jobs the wall-time ratio means little (PyTorch's OpenMP threads wait for each
   other at every operator while one of them is descheduled; ONNX Runtime's pool suffers less), so a run is
   comparable with another only where that share is near 0.
2. One 1080p BGR frame end to end, Fast-SCNN at 512x1024: ``Segmenter.segment`` (preprocess kernel -> ONNX Runtime
   -> upsample+argmax kernel straight to 1080p) against the path a user writes by hand (cv2.resize + NumPy
   normalisation -> PyTorch eager -> F.interpolate to 1080p -> argmax), with the labels compared.

Weights are the untrained seed-0 ones (speed does not depend on them). Ratios come from one run on one machine:
    python benchmarks/runtime.py            # table on stdout, benchmarks/results/runtime-<host>.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_stamp, save_results, timeit_in_turn  # noqa: E402

FAMILIES = ("fast_scnn", "bisenetv2", "bisenetv1", "icnet_liminn", "fcn_resnet50_tv")
SIZE = (512, 1024)


def export_fp32(model: str, size: tuple[int, int], out: Path) -> Path:
    from rtseg.export.pipeline import ExportOptions, run_export

    opts = ExportOptions(out=out / model, model=model, num_classes=19, input_size=size, precision="fp32",
                         calib_frames=1)
    assert run_export(opts, say=lambda line: None).passed
    return out / model


def bench_model_only(model: str, bundle: Path, repeat: int) -> dict:
    import torch

    from rtseg.runtime import load
    from rtseg.runtime.torch import TorchRunner

    x = np.random.default_rng(0).standard_normal((1, 3, *SIZE)).astype(np.float32)
    # One after the other, each with the process to itself (no ONNX Runtime session open beside PyTorch).
    with load(bundle, backend="onnxruntime", device="cpu") as seg:
        ort = timeit_in_turn({"ort": lambda: seg.runner.infer(x)}, repeat)["ort"]
    with TorchRunner(model, 19) as runner:
        eager = timeit_in_turn({"torch": lambda: runner.infer(x)}, repeat)["torch"]
    return {"model": model, "size": list(SIZE), "onnxruntime_cpu": ort, "torch_eager": eager,
            "torch_threads": torch.get_num_threads(),
            "speedup": eager["median_ms"] / ort["median_ms"]}


def naive_segment(model, frame: np.ndarray, size: tuple[int, int], mean, std) -> np.ndarray:
    """What a user writes: cv2.resize + NumPy normalise -> PyTorch eager -> F.interpolate to the frame -> argmax."""
    import cv2
    import torch
    import torch.nn.functional as F

    rgb = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)[..., ::-1]
    x = (rgb.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
    with torch.inference_mode():
        low = model.forward_lowres(t)
        up = F.interpolate(low, size=frame.shape[:2], mode="bilinear", align_corners=model.final_upsample.align_corners)
        return up.argmax(1)[0].numpy().astype(np.uint8)


def bench_end_to_end(bundle: Path, repeat: int) -> dict:
    from rtseg.scenes import synthetic_scenes
    from rtseg.runtime import load
    from rtseg.runtime.torch import TorchRunner

    frame = np.ascontiguousarray(synthetic_scenes(1, 1080, 1920, seed=11)[0][..., ::-1])
    with load(bundle, backend="onnxruntime", device="cpu") as seg, TorchRunner("fast_scnn", 19) as runner:
        inp = seg.manifest["input"]
        ours = seg.segment(frame).labels
        naive = naive_segment(runner.model, frame, SIZE, inp["mean"], inp["std"])
        stages = {k: [] for k in ("preprocess", "infer", "postprocess")}

        def run_ours():
            for k, v in seg.segment(frame).timings.items():
                stages[k].append(v)

        timed = timeit_in_turn({"segment": run_ours,
                                "naive": lambda: naive_segment(runner.model, frame, SIZE, inp["mean"], inp["std"])},
                               repeat)
        fast, slow = timed["segment"], timed["naive"]
    return {"frame": [1080, 1920], "model": "fast_scnn", "size": list(SIZE), "segment": fast, "naive": slow,
            "segment_stages_median_ms": {k: 1e3 * float(np.median(v)) for k, v in stages.items()},
            "speedup": slow["median_ms"] / fast["median_ms"], "label_agreement": float((ours == naive).mean())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/runtime-<host>.json)")
    args = parser.parse_args(argv)
    import torch  # noqa: F401 - loaded before the stamp, which records its thread count

    stamp = machine_stamp()
    results = {"machine": stamp, "model_only": [], "end_to_end": None}
    with tempfile.TemporaryDirectory() as tmp:
        families = args.families.split(",")
        for model in tqdm(families, desc="model only", unit="model"):
            bundle = export_fp32(model, SIZE, Path(tmp))
            repeat = max(3, args.repeat // 2) if "resnet" in model else args.repeat
            results["model_only"].append(bench_model_only(model, bundle, repeat))
        fast_scnn = Path(tmp) / "fast_scnn"
        if not (fast_scnn / "rtseg.json").is_file():
            export_fp32("fast_scnn", SIZE, Path(tmp))
        results["end_to_end"] = bench_end_to_end(fast_scnn, args.repeat)

    print(f"machine: {stamp['cpu']}, {stamp['cores_usable']} cores; torch {stamp['versions']['torch']},"
          f" ONNX Runtime {stamp['versions']['onnxruntime']}")
    print(f"\nmodel only, {SIZE[0]}x{SIZE[1]}, batch 1 (median ms)")
    print(f"{'model':<18} {'ORT CPU':>9} {'torch':>9} {'x':>6}   CPU s/call ORT, torch; others' CPU share")
    for r in results["model_only"]:
        o, t = r["onnxruntime_cpu"], r["torch_eager"]
        share = max((v["others_cpu_share"] or 0.0) for v in (o, t))
        print(f"{r['model']:<18} {o['median_ms']:9.1f} {t['median_ms']:9.1f} {r['speedup']:6.2f}"
              f"   {o['cpu_ms_median'] / 1e3:.2f}, {t['cpu_ms_median'] / 1e3:.2f}; {share:.2f}")
    e = results["end_to_end"]
    s = e["segment_stages_median_ms"]
    print(f"\n1080p frame end to end, Fast-SCNN at {SIZE[0]}x{SIZE[1]}: segment() {e['segment']['median_ms']:.1f} ms"
          f" (preprocess {s['preprocess']:.1f}, infer {s['infer']:.1f}, postprocess {s['postprocess']:.1f}),"
          f" naive {e['naive']['median_ms']:.1f} ms: {e['speedup']:.1f}x, labels agree {100 * e['label_agreement']:.3f}%")
    save_results("runtime", results, stamp["host"], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
