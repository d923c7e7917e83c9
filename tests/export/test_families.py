"""Acceptance: every family exports to a verified bundle with the reference-fixture weights on scene-like frames.

One export per model (module-scoped), checked three ways: the pipeline's own gates (FP32 >= 99.99%, FP16 >= 99.5%),
an independent re-run of the bundle's graphs with ONNX Runtime against PyTorch, and, for the dynamic exports of
BiSeNetV1 and Fast-SCNN, two further sizes inside the range that the export itself never saw.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rtseg.files import sha256_file
from rtseg.export.pipeline import ExportOptions, run_export
from rtseg.bundle import normalize
from rtseg.scenes import synthetic_scenes
from rtseg.export.verify import onnxruntime_runner
from rtseg.models import create_model

from ..models.reference import manifest, save_reference_checkpoint

# stem -> (input size, dynamic range or None, calibration frames, FP16 converter)
CASES = {
    "bisenetv1": ((128, 256), ((64, 128), (256, 512)), 2, "auto"),
    "bisenetv2": ((128, 256), None, 2, "auto"),
    "fast_scnn": ((128, 256), ((64, 128), (256, 512)), 2, "auto"),
    "icnet_liminn": ((128, 256), None, 2, "auto"),
    "fcn_resnet50_tv": ((64, 128), None, 2, "auto"),
    # 134M parameters: one small export, through rtseg's own FP16 converter (AutoCast takes ~4x longer here).
    "fcn8s_vgg16": ((64, 64), None, 1, "rtseg"),
}


# The VGG FCN's export (134M parameters, ~3 min here) runs with `pytest -m heavy`; its graphs are still traced and
# checked against the reference logits by the default run (tests/models/test_contract.py, test_reference_fixtures.py).
HEAVY = [pytest.mark.slow, pytest.mark.heavy]


@pytest.fixture(scope="module", params=[pytest.param(s, marks=HEAVY) if "vgg" in s else s for s in sorted(CASES)])
def exported(request, reference_dir, tmp_path_factory):
    stem = request.param
    size, dynamic, frames, converter = CASES[stem]
    man = manifest(reference_dir, stem)
    tmp = tmp_path_factory.mktemp(stem)
    ckpt = save_reference_checkpoint(man, tmp / f"{stem}.pth")
    opts = ExportOptions(out=tmp / "bundle", model=stem, weights=ckpt, num_classes=man["num_classes"],
                         input_size=size, dynamic=dynamic, calib_frames=frames, fp16_converter=converter)
    result = run_export(opts, say=lambda line: None)
    model = create_model(stem, num_classes=man["num_classes"], checkpoint=ckpt)
    return stem, result, model


def test_gates_pass(exported):
    stem, result, _ = exported
    ver = result.manifest["verification"]
    assert result.passed, f"{stem}: {json.dumps(ver)[:800]}"
    assert ver["onnx"]["agreement"] >= 0.9999
    assert ver["onnx_fp16"]["agreement"] >= 0.995
    assert (result.out / "rtseg.json").is_file()


def test_bundle_artifacts(exported):
    _, result, model = exported
    man = json.loads((result.out / "rtseg.json").read_text())
    assert man["format_version"] == 1
    assert man["model"]["num_classes"] == model.num_classes == len(man["model"]["class_names"])
    assert len(man["model"]["palette"]) == model.num_classes
    for key in ("onnx", "onnx_fp16"):
        art = man["artifacts"][key]
        assert sha256_file(result.out / art["file"]) == art["sha256"]
    assert man["output"]["kind"] == "logits"
    assert man["output"]["upsample"]["align_corners"] == model.final_upsample.align_corners
    assert man["build"]["torch"] == torch.__version__


def _agreement(stem, result, model, graph, size, seed=7):
    x = normalize(synthetic_scenes(2, *size, seed=seed), _pre(result))
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).argmax(1).numpy()  # (N, H, W): PyTorch's full output
    run = onnxruntime_runner(result.out / graph)
    out = np.concatenate([run(x[i:i + 1]) for i in range(len(x))])
    up = result.manifest["output"]["upsample"]
    low = torch.from_numpy(out)
    if up["mode"] != "none":  # PyTorch's own definition of the owed upsample, not rtseg's kernel
        low = torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=up["align_corners"])
    return float((low.argmax(1).numpy() == ref).mean())


def _pre(result):
    from rtseg.bundle import Preprocessing

    i = result.manifest["input"]
    return Preprocessing(tuple(i["mean"]), tuple(i["std"]), i["channel_order"], i["value_scale"])


# Every test here takes the module-scoped `exported` fixture with its own params (never an indirect subset, which
# pytest cannot group with the others, so each model would be exported once per test) and skips the models it
# does not apply to.
def test_graphs_agree_with_pytorch_independently(exported):
    stem, result, model = exported
    if "vgg" in stem:
        pytest.skip("the VGG FCN's gates already ran this comparison; reloading its 0.5 GB graphs twice more"
                    " would double its share of the suite's time")
    size = tuple(result.manifest["input"]["profile"]["opt"][2:] if result.manifest["input"]["profile"]
                 else result.manifest["input"]["shape"][2:])
    assert _agreement(stem, result, model, "model.onnx", size) >= 0.9999
    assert _agreement(stem, result, model, "model.fp16.onnx", size) >= 0.995


def test_dynamic_graph_runs_at_other_sizes(exported):
    stem, result, model = exported
    if CASES[stem][1] is None:
        pytest.skip(f"{stem} is exported at one size here")
    prof = result.manifest["input"]["profile"]
    assert prof["min"] == [1, 3, 64, 128] and prof["max"] == [1, 3, 256, 512]
    for size in ((96, 192), (192, 416)):  # inside the range, neither min, opt nor max
        assert _agreement(stem, result, model, "model.onnx", size) >= 0.9999, size


# -- the runtime on these bundles (issue: runtime acceptance) --------------------------------------------------
# Frames of the sizes users feed (720p, 1080p, an odd size), scene-like, BGR as a camera gives them.
RUNTIME_FRAMES = ((720, 1280), (1080, 1920), (333, 517))


def _pytorch_labels(model, frame_bgr, size, pre, align_corners):
    """What a user computes with PyTorch: cv2 INTER_LINEAR resize, the bundle's normalisation, the low-resolution
    logits upsampled by F.interpolate straight to the frame's size, argmax."""
    import cv2
    import torch.nn.functional as F

    h, w = size
    rgb = cv2.resize(frame_bgr, (w, h), interpolation=cv2.INTER_LINEAR)[..., ::-1]
    x = torch.from_numpy(normalize(rgb[None], pre))
    with torch.inference_mode():
        low = model.forward_lowres(x)  # (1, C, h', w')
        up = F.interpolate(low, size=frame_bgr.shape[:2], mode="bilinear", align_corners=align_corners)
    return up.argmax(1)[0].numpy()


def test_runtime_segment_matches_pytorch(exported):
    from rtseg.runtime import load

    stem, result, model = exported
    pre = _pre(result)
    align = result.manifest["output"]["upsample"]["align_corners"]
    with load(result.out, backend="onnxruntime", device="cpu") as seg, \
            load(result.out, backend="onnxruntime", device="cpu", precision="fp16") as seg16, \
            load(result.out, backend="torch", device="cpu") as seg_torch:
        assert seg.describe()["graph"] == "model.onnx" and seg16.describe()["graph"] == "model.fp16.onnx"
        for i, size in enumerate(RUNTIME_FRAMES):
            frame = np.ascontiguousarray(synthetic_scenes(1, *size, seed=100 + i)[0][..., ::-1])  # BGR
            res = seg.segment(frame)
            assert res.labels.shape == size and res.labels.dtype == np.uint8
            ref = _pytorch_labels(model, frame, res.input_size, pre, align)
            assert (res.labels == ref).mean() >= 0.9999, (stem, size)
            assert (seg_torch.segment(frame).labels == ref).mean() >= 0.9999, (stem, size)
            assert (seg16.segment(frame).labels == ref).mean() >= 0.995, (stem, size)
