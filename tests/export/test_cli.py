"""``rtseg export`` end to end through the CLI: bring-your-own ONNX, re-runs, failed gates and bad input."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from rtseg.cli import main
from rtseg.files import sha256_file
from rtseg.export.pipeline import ExportOptions, run_export
from rtseg.export.verify import onnxruntime_runner

from ..models.reference import manifest, save_reference_checkpoint


class TinyUNet(nn.Module):
    """A two-level U-Net: encoder, bottleneck, transposed-conv decoder with skip concatenation."""

    def __init__(self, num_classes: int = 3):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

        self.enc1, self.enc2, self.mid = block(3, 8), block(8, 16), block(16, 32)
        self.up2, self.dec2 = nn.ConvTranspose2d(32, 16, 2, stride=2), block(32, 16)
        self.up1, self.dec1 = nn.ConvTranspose2d(16, 8, 2, stride=2), block(16, 8)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):  # (N, 3, H, W) -> (N, C, H, W)
        e1 = self.enc1(x)  # (N, 8, H, W)
        e2 = self.enc2(nn.functional.max_pool2d(e1, 2))  # (N, 16, H/2, W/2)
        m = self.mid(nn.functional.max_pool2d(e2, 2))  # (N, 32, H/4, W/4)
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))  # (N, 16, H/2, W/2)
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))  # (N, 8, H, W)
        return self.head(d1)


def _export_onnx(module, path, size=(64, 96), dynamic=True, outputs=("mask",)):
    torch.manual_seed(0)
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, *size),), str(path), input_names=["image"],
                          output_names=list(outputs), opset_version=17, dynamo=False,
                          dynamic_axes={"image": {2: "h", 3: "w"}} if dynamic else None)
    return path


@pytest.fixture(scope="module")
def unet_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyUNet(3)
    with torch.no_grad():  # non-trivial BN statistics, as a trained model has
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return _export_onnx(model, tmp_path_factory.mktemp("unet") / "unet.onnx"), model


def test_bring_your_own_unet(unet_onnx, tmp_path, capsys):
    path, model = unet_onnx
    out = tmp_path / "bundle"
    rc = main(["export", "--onnx", str(path), "--num-classes", "3", "--input-size", "64x96",
               "--dynamic", "32x64:128x192", "--out", str(out)])
    assert rc == 0, capsys.readouterr()
    man = json.loads((out / "rtseg.json").read_text())
    assert man["input"]["name"] == "image" and man["output"]["name"] == "mask"
    assert man["input"]["profile"]["max"] == [1, 3, 128, 192]
    assert man["output"]["kind"] == "logits" and man["output"]["upsample"]["mode"] == "none"
    assert man["model"]["class_names"] == ["class_0", "class_1", "class_2"]
    assert man["artifacts"]["engine"] is None
    assert man["verification"]["onnx_fp16"]["agreement"] >= 0.995
    for key in ("onnx", "onnx_fp16"):
        assert sha256_file(out / man["artifacts"][key]["file"]) == man["artifacts"][key]["sha256"]
    onnx.checker.check_model(str(out / "model.onnx"))
    # The bundle's FP32 graph is the user's model: same output as PyTorch at a size of the range.
    x = np.random.default_rng(1).standard_normal((1, 3, 96, 160)).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    got = onnxruntime_runner(out / "model.onnx")(x)
    assert np.abs(got - ref).max() < 1e-4
    assert "engine     skipped:" in capsys.readouterr().out


def test_rerun_reuses_steps_and_force_redoes(unet_onnx, tmp_path, capsys):
    path, _ = unet_onnx
    args = ["export", "--onnx", str(path), "--num-classes", "3", "--input-size", "64x96", "--out", str(tmp_path)]
    assert main(args) == 0
    first = {p: os.stat(tmp_path / p).st_mtime_ns for p in ("model.onnx", "model.fp16.onnx")}
    capsys.readouterr()
    assert main(args) == 0
    assert "[reused]" in capsys.readouterr().out
    assert {p: os.stat(tmp_path / p).st_mtime_ns for p in first} == first
    assert main([*args, "--force"]) == 0
    assert "[reused]" not in capsys.readouterr().out
    assert os.stat(tmp_path / "model.onnx").st_mtime_ns != first["model.onnx"]


def near_tie_onnx(path):
    """Two logits 1e-4 apart (relative): FP32 tells them apart, FP16 (eps ~1e-3) makes them tie everywhere."""
    head = nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([1.0, 1.0, 1.0]).view(1, 3, 1, 1) * torch.tensor([1.0, 1.0001]).view(2, 1, 1, 1))
    return _export_onnx(head, path)


def test_failed_gate_keeps_artifacts_and_report(tmp_path):
    path = near_tie_onnx(tmp_path / "near_tie.onnx")
    (tmp_path / "rtseg.json").write_text("{}")  # a stale manifest from an earlier run must not survive
    opts = ExportOptions(out=tmp_path, onnx=path, num_classes=2, input_size=(64, 96))
    result = run_export(opts, say=lambda line: None)
    assert not result.passed
    assert not (tmp_path / "rtseg.json").exists()
    report = json.loads((tmp_path / "rtseg.failed.json").read_text())
    assert report["verification"]["passed"] is False
    assert report["verification"]["onnx_fp16"]["passed"] is False
    assert report["verification"]["engine"] == {"skipped": "an earlier gate failed", "passed": False}
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "model.fp16.onnx").is_file()


def test_fp32_precision_has_no_fp16_graph(unet_onnx, tmp_path):
    path, _ = unet_onnx
    rc = main(["export", "--onnx", str(path), "--num-classes", "3", "--input-size", "64x96", "--precision", "fp32",
               "--gate-fp16", "1", "--out", str(tmp_path)])
    assert rc == 0  # fp32: no FP16 graph, no FP16 gate
    assert json.loads((tmp_path / "rtseg.json").read_text())["artifacts"]["onnx_fp16"] is None


# -- bad input: one line, non-zero exit, no traceback, no rtseg.json ------------------------------------------

def _fails(args, capsys, out_dir, match):
    rc = main(args)
    err = capsys.readouterr().err
    assert rc != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rtseg: error:"), err
    assert "Traceback" not in err
    assert match in lines[0], lines[0]
    assert not (out_dir / "rtseg.json").exists()


def test_missing_weights(tmp_path, capsys):
    _fails(["export", "--model", "fast_scnn", "--weights", str(tmp_path / "nope.pth"), "--input-size", "64x128",
            "--out", str(tmp_path / "b")], capsys, tmp_path / "b", "nope.pth")


def test_other_familys_checkpoint(reference_dir, tmp_path, capsys):
    ckpt = save_reference_checkpoint(manifest(reference_dir, "bisenetv2"), tmp_path / "v2.pth")
    _fails(["export", "--model", "fast_scnn", "--weights", str(ckpt), "--input-size", "64x128",
            "--out", str(tmp_path / "b")], capsys, tmp_path / "b", "does not fit fast_scnn")


def test_onnx_that_is_not_segmentation(tmp_path, capsys):
    class Classifier(nn.Module):
        def forward(self, x):  # (N, 3, H, W) -> (N, 10)
            return x.mean((2, 3)).repeat(1, 4)[:, :10]

    path = _export_onnx(Classifier(), tmp_path / "cls.onnx", outputs=("scores",))
    _fails(["export", "--onnx", str(path), "--num-classes", "10", "--input-size", "64x96",
            "--out", str(tmp_path / "b")], capsys, tmp_path / "b", "not a segmentation model")


def test_onnx_with_wrong_class_count(unet_onnx, tmp_path, capsys):
    path, _ = unet_onnx
    _fails(["export", "--onnx", str(path), "--num-classes", "5", "--input-size", "64x96",
            "--out", str(tmp_path / "b")], capsys, tmp_path / "b", "--num-classes")


def test_garbage_onnx_file(tmp_path, capsys):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00not a protobuf at all" * 10)
    _fails(["export", "--onnx", str(path), "--num-classes", "3", "--input-size", "64x96",
            "--out", str(tmp_path / "b")], capsys, tmp_path / "b", "junk.onnx")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_dir_unprivileged(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    _fails(["export", "--model", "fast_scnn", "--input-size", "64x128", "--out", str(locked / "b")], capsys,
           locked / "b", "cannot write the bundle")


def test_output_dir_in_a_read_only_filesystem(tmp_path, capsys):
    _fails(["export", "--model", "fast_scnn", "--input-size", "64x128", "--out", "/proc/rtseg-bundle"], capsys,
           tmp_path, "cannot write the bundle")


def test_output_path_is_a_file(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    _fails(["export", "--model", "fast_scnn", "--input-size", "64x128", "--out", str(target / "b")], capsys,
           target / "b", "cannot write the bundle")


@pytest.mark.parametrize("args, match", [
    (["--model", "fast_scnn", "--input-size", "100x200"], "multiples of 32"),
    (["--model", "bisenetv1", "--input-size", "128x256", "--dynamic", "64x100:256x512"], "multiples of 32"),
    (["--model", "icnet_ptsemseg_bn", "--input-size", "1025x2049", "--dynamic", "1025x2049:2049x4097"],
     "dynamic"),
    (["--model", "fast_scnn", "--input-size", "512x1024", "--dynamic", "64x128:256x512"], "outside --dynamic"),
    (["--model", "fast_scnn", "--input-size", "big"], "expected HxW"),
    (["--model", "no_such_net", "--input-size", "64x64"], "unknown model"),
    (["--model", "fast_scnn", "--num-classes", "0", "--input-size", "64x64"], "at least 1"),
])
def test_sizes_and_names_the_model_cannot_take(args, match, tmp_path, capsys):
    _fails(["export", *args, "--out", str(tmp_path / "b")], capsys, tmp_path / "b", match)
