"""Reduced precision on the CPU: rtseg's own INT8 and BF16 against ONNX Runtime FP32, speed and accuracy.

1. Speed, per family at 512x1024 (untrained seed-0 weights: speed does not depend on them): a bundle exported with
   ``--precision int8`` (its gate loosened, since untrained logits say nothing about accuracy), then one thread
   each, CPU seconds per inference, engines interleaved (one call of each per round): ONNX Runtime FP32 (rtseg
   today), OpenVINO FP32 (inference precision hint f32), OpenVINO BF16, ONNX Runtime INT8 (the bundle's U8S8 QDQ
   graph) and OpenVINO INT8 (the same graph read by OpenVINO). Ratios are against ONNX Runtime FP32's CPU time.
2. Accuracy, the demo's trained Fast-SCNN on its labelled street video (288x512, the demo's input): an INT8 bundle
   calibrated on frames of the video, then every engine on every frame: per-pixel agreement with ONNX Runtime FP32
   (mean and worst frame) and mIoU against the rendered ground truth (labels resized to the network's input by
   nearest neighbour).

    python benchmarks/precision.py [--families fast_scnn,bisenetv1,fcn_resnet50_tv] [--rounds 3] [--nncf]

``--nncf`` adds OpenVINO INT8 from NNCF's own quantizer (the engine a user could pick instead); comparing the two
compiled models layer by layer (OpenVINO's ``PERF_COUNT``) is how rtseg/export/quantize.py's attention-gate and
input rules were found.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_stamp, save_results, timeit_in_turn  # noqa: E402

FAMILIES = ("fast_scnn", "bisenetv1", "fcn_resnet50_tv")
SIZE = (512, 1024)
ENGINES = ("ort_fp32", "ov_fp32", "ov_bf16", "ort_int8", "ov_int8")


def nncf_graph(bundle: Path, frames: np.ndarray) -> Path:
    """OpenVINO's own INT8 quantizer (NNCF, default preset) on the bundle's FP32 graph, calibrated on ``frames``:
    the graph a user could make instead of rtseg's, saved as OpenVINO IR."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(bundle / "model.onnx"))
    quantized = nncf.quantize(model, nncf.Dataset([frames[i:i + 1] for i in range(len(frames))]),
                              subset_size=len(frames))
    ov.save_model(quantized, str(bundle / "nncf_int8.xml"))
    return bundle / "nncf_int8.xml"


def runners(bundle: Path) -> dict:
    from rtseg.runtime.onnxruntime import OnnxRuntimeRunner
    from rtseg.runtime.openvino import OpenVinoRunner

    fp32, int8 = bundle / "model.onnx", bundle / "model.int8.onnx"
    return {"ort_fp32": OnnxRuntimeRunner(fp32, "cpu", threads=1), "ov_fp32": OpenVinoRunner(fp32, "fp32", 1),
            "ov_bf16": OpenVinoRunner(fp32, "bf16", 1), "ort_int8": OnnxRuntimeRunner(int8, "cpu", threads=1),
            "ov_int8": OpenVinoRunner(int8, "int8", 1)}


def export(out: Path, **kw) -> dict:
    from rtseg.export.pipeline import ExportOptions, run_export

    result = run_export(ExportOptions(out=out, precision="int8", **kw), say=lambda line: print("  " + line))
    return dict(result.manifest.verification)


def speed(family: str, rounds: int, tmp: Path, with_nncf: bool = False) -> dict:
    print(f"{family}: export --precision int8 at {SIZE[0]}x{SIZE[1]}")
    ver = export(tmp / family, model=family, num_classes=19, input_size=SIZE, calib_frames=4, gate_frames=1,
                 gate_int8=0.01, gate_int8_worst=0.01, int8_fallback=0)
    x = np.random.default_rng(0).standard_normal((1, 3, *SIZE)).astype(np.float32)
    engines = runners(tmp / family)
    if with_nncf:  # calibrated on synthetic street scenes, as the export was (not the very same frames)
        from rtseg.bundle import normalize, read_manifest
        from rtseg.runtime.openvino import OpenVinoRunner
        from rtseg.scenes import synthetic_scenes

        pre = read_manifest(tmp / family).preprocessing
        calib = normalize(synthetic_scenes(4, *SIZE, seed=SIZE[0] * 10007 + SIZE[1]), pre)
        engines["ov_nncf_int8"] = OpenVinoRunner(nncf_graph(tmp / family, calib), "int8", 1)
    active = {name: r.activate() for name, r in engines.items()}
    timed = timeit_in_turn({name: (lambda r=r: r.infer(x)) for name, r in active.items()}, repeat=rounds)
    base = timed["ort_fp32"]["cpu_ms_median"]
    row = {name: {**t, "speedup_cpu": base / t["cpu_ms_median"]} for name, t in timed.items()}
    row["int8_graph"] = ver["onnx_int8"]["graph"]
    row["describe"] = {name: r.describe() for name, r in active.items()}
    print("  " + "  ".join(f"{n} {row[n]['cpu_ms_median']:.1f} ms ({row[n]['speedup_cpu']:.2f}x)" for n in active))
    return row


def accuracy(tmp: Path, street: Path | None) -> dict:
    from rtseg.bundle import normalize, read_manifest
    from rtseg.demo.run import INPUT_SIZE, MODEL, NUM_CLASSES, shipped_weights
    from rtseg.demo.video import LABELS_DIR, VIDEO_FILE, render_video
    from rtseg.export.reduced import _truth, mean_iou
    from rtseg.export.verify import labels_from_output
    from rtseg.scenes import load_frames_named

    street = street or tmp / "street"
    render_video(street)  # reused where the folder already holds it
    video, labels = street / VIDEO_FILE, street / LABELS_DIR
    print(f"accuracy: the demo's Fast-SCNN, INT8 calibrated on {video}")
    bundle = tmp / "demo_int8"
    ver = export(bundle, model=MODEL, weights=shipped_weights(), num_classes=NUM_CLASSES, classes="cityscapes",
                 input_size=INPUT_SIZE, calib=video, calib_labels=labels, calib_frames=16, gate_frames=16)
    manifest = read_manifest(bundle)
    raw, names = load_frames_named(video, 10_000, *INPUT_SIZE)
    x, truth = normalize(raw, manifest.preprocessing), _truth(labels, names, INPUT_SIZE)
    up = manifest["output"]["upsample"]
    out = {}
    for name, r in runners(bundle).items():
        with r:
            out[name] = np.concatenate([labels_from_output(r.infer(x[i:i + 1]), "logits", up, INPUT_SIZE)
                                        for i in range(len(x))])
    rows = {}
    for name, lab in out.items():
        same = (lab == out["ort_fp32"]).reshape(len(lab), -1).mean(axis=1)
        rows[name] = {"agreement": float(same.mean()), "worst_frame": float(same.min()),
                      "miou": mean_iou(lab, truth, NUM_CLASSES)}
        print(f"  {name:<9} agreement {100 * same.mean():.2f}% (worst {100 * same.min():.2f}%)"
              f"  mIoU {100 * rows[name]['miou']:.2f}")
    calib_frames = ver["onnx_int8"]["frames"]["calibration"]
    return {"frames": len(x), "calibration_frames": calib_frames, "engines": rows,
            "note": "the INT8 graph was calibrated on 16 of the video's frames; mIoU over all of them"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--nncf", action="store_true", help="add OpenVINO INT8 from NNCF's own quantizer (pip install"
                    " nncf), the engine a user could pick instead")
    ap.add_argument("--street", type=Path, help="where the demo's street video is (or is rendered); default: a"
                    " temporary folder")
    ap.add_argument("--keep", type=Path, help="export the bundles here and keep them (a re-run reuses their steps);"
                    " default: a temporary folder")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results = {"machine": machine_stamp(), "size": list(SIZE), "threads": 1, "rounds": args.rounds, "speed": {}}
    with tempfile.TemporaryDirectory(prefix="rtseg-precision-") as tmp:
        tmp = args.keep or Path(tmp)
        if not args.skip_accuracy:
            results["accuracy"] = accuracy(tmp, args.street)
        for family in args.families.split(","):
            results["speed"][family] = speed(family, args.rounds, tmp, args.nncf)
    save_results("precision", results, out=args.out)


if __name__ == "__main__":
    main()
