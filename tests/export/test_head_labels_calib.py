"""``--head labels`` (upsample + argmax inside the graph) verified on the user's own ``--calib`` images."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnxruntime as ort
import torch

from rtseg.cli import main
from rtseg.models import create_model

from ..models.reference import fill


def _street_images(folder, count=3, height=90, width=120):
    """Small BGR pictures with flat regions, edges and texture, written as PNG the way a user's frames arrive."""
    rng = np.random.default_rng(7)
    folder.mkdir()
    for i in range(count):
        img = np.zeros((height, width, 3), np.uint8)
        img[: height // 2] = (200, 150, 90)  # sky
        img[height // 2:] = (70, 70, 70)  # road
        cv2.rectangle(img, (10 + 20 * i, 20), (50 + 20 * i, 70), (40, 120, 40), -1)  # a building or tree
        img += rng.integers(0, 20, img.shape, dtype=np.uint8)  # texture
        cv2.imwrite(str(folder / f"frame{i}.png"), img)
    return folder


def test_labels_head_exports_argmax_at_input_size(tmp_path, capsys):
    torch.manual_seed(3)
    model = create_model("fast_scnn", num_classes=5)
    with torch.no_grad():  # weights away from the initial state (the fixtures' fill rule), so the labels vary
        for name, t in model.state_dict().items():
            t.copy_(torch.from_numpy(fill(name, tuple(t.shape), str(t.dtype))))
    ckpt = tmp_path / "fast_scnn.pth"
    torch.save({"model": model.state_dict()}, ckpt)
    calib = _street_images(tmp_path / "calib")
    out = tmp_path / "bundle"

    rc = main(["export", "--model", "fast_scnn", "--weights", str(ckpt), "--num-classes", "5", "--input-size",
               "64x96", "--head", "labels", "--precision", "fp32", "--calib", str(calib), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err

    manifest = json.loads((out / "rtseg.json").read_text())
    assert manifest["output"]["kind"] == "labels" and manifest["output"]["upsample"] is None
    assert str(calib) in manifest["verification"]["frames"]["source"]
    assert manifest["verification"]["onnx"]["agreement"] >= 0.9999
    assert manifest["artifacts"]["onnx_fp16"] is None

    # The graph's labels are PyTorch's argmax at the input size, on a normalised calibration frame.
    pre = manifest["input"]
    rgb = cv2.cvtColor(cv2.resize(cv2.imread(str(calib / "frame1.png")), (96, 64)), cv2.COLOR_BGR2RGB)
    x = ((rgb / 255.0 / pre["value_scale"] - pre["mean"]) / pre["std"]).astype(np.float32)
    x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])  # (1, 3, 64, 96)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    labels = sess.run(None, {pre["name"]: x})[0]
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).argmax(1).numpy()
    assert labels.shape == (1, 64, 96) and labels.dtype.kind in "iu"
    assert (labels == expected).mean() >= 0.9999
    assert len(np.unique(expected)) > 1  # the comparison is not between two constant maps
