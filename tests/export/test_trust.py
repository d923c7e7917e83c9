"""A bundle's ``rtseg.json`` is a promise that its graphs were verified; these tests hold rtseg export to it.

Stale manifests (a re-export interrupted or failing after the graphs were overwritten), NaN-blind verification, the
per-frame gate, Ctrl-C/SIGTERM at any point, and the rebuild command written into the manifest.
"""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import onnx
import pytest
import torch
from torch import nn

from rtseg.cli import main
from rtseg.files import sha256_file
from rtseg.export.options import ExportOptions
from rtseg.export.pipeline import run_export
from rtseg.scenes import synthetic_scenes
from rtseg.export.verify import (
    build_reference,
    compare,
    first_nonfinite_node,
    onnxruntime_runner,
)
from rtseg.models import create_model

from ..conftest import REPO
from .test_bad_inputs import _torch_onnx


@pytest.fixture(scope="module")
def passed(tmp_path_factory):
    """A verified fast_scnn bundle exported with many non-default options (--calib, --classes, normalisation...)."""
    d = tmp_path_factory.mktemp("trust")
    calib = d / "calib"
    calib.mkdir()
    for i, frame in enumerate(synthetic_scenes(2, 96, 160, seed=7)):
        cv2.imwrite(str(calib / f"street_{i}.png"), frame[..., ::-1])
    out = d / "bundle"
    rc = main(["export", "--model", "fast_scnn", "--input-size", "64x128", "--calib", str(calib), "--calib-frames",
               "2", "--classes", "cityscapes", "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--gate-fp16",
               "0.99", "--gate-fp32", "0.999", "--workspace", "256", "--fp16-converter", "rtseg", "--out", str(out)])
    assert rc == 0
    return out


def _copy(bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(bundle, dst)
    assert (dst / "rtseg.json").is_file()
    return dst


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.name in ("rtseg.json", "rtseg.failed.json")
                  or p.name.endswith(".tmp"))


def _promise_holds(folder) -> bool:
    """No temporary file, and either no rtseg.json or one whose every artifact hash matches its file."""
    if list(folder.rglob("*.tmp")):
        return False
    if not (folder / "rtseg.json").is_file():
        return True
    artifacts = json.loads((folder / "rtseg.json").read_text())["artifacts"]
    return all(sha256_file(folder / a["file"]) == a["sha256"] for a in artifacts.values() if a)


def test_rebuild_command_reproduces_the_bundle(passed, tmp_path):
    manifest = json.loads((passed / "rtseg.json").read_text())
    argv = shlex.split(manifest["build"]["command"])
    assert argv[:2] == ["rtseg", "export"]
    for flag in ("--calib", "--classes", "--mean", "--std", "--gate-fp16", "--workspace", "--fp16-converter"):
        assert flag in argv, flag
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    assert main(argv[1:]) == 0
    again = json.loads((tmp_path / "again" / "rtseg.json").read_text())
    for key in ("onnx", "onnx_fp16"):
        assert again["artifacts"][key]["sha256"] == manifest["artifacts"][key]["sha256"], key
    assert again["input"] == manifest["input"] and again["model"]["class_names"] == manifest["model"]["class_names"]


def test_interrupted_reexport_leaves_no_manifest(passed, tmp_path):
    out = _copy(passed, tmp_path)
    old = json.loads((out / "rtseg.json").read_text())["artifacts"]["onnx"]["sha256"]
    torch.manual_seed(1)
    weights = tmp_path / "retrained.pth"
    torch.save(create_model("fast_scnn", num_classes=19).state_dict(), weights)

    def say(line):  # Ctrl-C right after the new FP32 graph replaced the verified one
        if line.lstrip().startswith("onnx "):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_export(ExportOptions(out=out, model="fast_scnn", weights=weights, input_size=(64, 128),
                                 calib_frames=1), say=say)
    assert sha256_file(out / "model.onnx") != old
    assert _leftovers(out) == []


def test_error_found_after_import_leaves_no_manifest(passed, tmp_path, capsys):
    out = _copy(passed, tmp_path)
    graph = onnx.load(str(_torch_onnx(nn.Conv2d(3, 2, 1), tmp_path / "two.onnx")))
    graph.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "classes"  # the count shows only when run
    onnx.save(graph, str(tmp_path / "two.onnx"))
    rc = main(["export", "--onnx", str(tmp_path / "two.onnx"), "--num-classes", "5", "--input-size", "64x128",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "outputs 2 channels but --num-classes is 5" in err
    assert (out / "model.onnx").is_file() and _leftovers(out) == []


@pytest.mark.parametrize("argv, match", [
    (["--weights", "{nan}"], "weight 'classifier.conv.1.weight' holds NaN or infinity"),
    (["--std", "0,0,0"], "each std must be above 0"),
    (["--mean", "nan,0.456,0.406"], "NaN or infinity would make every input pixel NaN"),
])
def test_nan_sources_are_refused_before_any_bundle(argv, match, passed, tmp_path, capsys):
    state = create_model("fast_scnn", num_classes=19).state_dict()
    state["classifier.conv.1.weight"][3, 0, 0, 0] = float("nan")  # one diverged weight is enough
    torch.save(state, tmp_path / "diverged.pth")
    out = _copy(passed, tmp_path)
    argv = [a.format(nan=tmp_path / "diverged.pth") for a in argv]
    rc = main(["export", "--model", "fast_scnn", "--input-size", "64x128", *argv, "--out", str(out)])
    assert rc == 2 and match in capsys.readouterr().err
    assert (out / "rtseg.json").is_file()  # refused before the folder was touched: the old bundle stands


def _two_channel_graph(path, bias):
    """logits = (R, G + bias): which channel wins depends on each pixel's colours."""
    conv = nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).view(2, 3, 1, 1))
        conv.bias.copy_(torch.tensor([0.0, bias]))
    return _torch_onnx(conv, path, size=(32, 64))


def test_gate_applies_to_every_frame(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 32, 64)).astype(np.float32)
    x[:, 1] = x[:, 0] + np.where(rng.random((4, 32, 64)) < 0.5, 0.5, -0.5)  # a clear winner everywhere...
    near = rng.choice(32 * 64, size=20, replace=False)  # ...except 20 pixels (0.98%) of frame 3
    x[3, 1].flat[near] = x[3, 0].flat[near] - 0.005
    ref_run = onnxruntime_runner(_two_channel_graph(tmp_path / "ref.onnx", 0.0))
    shifted = _two_channel_graph(tmp_path / "shifted.onnx", 0.01)  # flips exactly the near ties
    sources = {(32, 64): [f"photo_{i}.jpg" for i in range(4)]}
    ref = build_reference(ref_run, {(32, 64): x}, "logits", {"mode": "none"}, sources)
    report = compare("onnx_fp16", onnxruntime_runner(shifted), ref, "logits", {"mode": "none"}, gate=0.995)
    assert report["agreement"] == pytest.approx(1 - 20 / (4 * 32 * 64)) and report["agreement"] > 0.995
    assert report["worst_frame"]["frame"] == "photo_3.jpg"
    assert report["worst_frame"]["agreement"] == pytest.approx(1 - 20 / (32 * 64))
    assert report["passed"] is False  # the mean passes the gate, one frame does not


def test_nonfinite_candidate_fails_and_names_the_node(tmp_path):
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 64)).astype(np.float32)
    ref = build_reference(onnxruntime_runner(_two_channel_graph(tmp_path / "ref.onnx", 0.0)), {(32, 64): x},
                          "logits", {"mode": "none"})

    class Overflow(nn.Module):  # what an FP16 graph does to a large intermediate: inf, then inf - inf = NaN
        def forward(self, t):
            big = t[:, :2] * 1e38
            return (big * 10) - (big * 10)

    bad = _torch_onnx(Overflow(), tmp_path / "bad.onnx", size=(32, 64))
    report = compare("onnx_fp16", onnxruntime_runner(bad), ref, "logits", {"mode": "none"}, gate=0.5,
                     locate=lambda frame: first_nonfinite_node(bad, frame))
    assert report["passed"] is False
    assert report["nonfinite"]["frames"] == 2 and report["nonfinite"]["first_node"].startswith("Mul node")
    assert np.isfinite(report["max_abs_err"])  # the report stays valid JSON
    json.dumps(report, allow_nan=False)


def _interrupt(out, sig, when):
    """Run rtseg export in a child and send ``sig`` once ``when`` happened: a stdout line starting with ``when``, or
    ``"importing torch"`` (libtorch is mapped into the child, its initialisation under way); return rc, stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "rtseg", "export", "--model", "fast_scnn", "--input-size",
                             "64x128", "--calib-frames", "1", "--force", "--out", str(out)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if when == "importing torch":
        maps = f"/proc/{proc.pid}/maps"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            with open(maps) as f:
                if "libtorch" in f.read():
                    break
            time.sleep(0.005)
    else:
        for line in proc.stdout:
            if line.lstrip().startswith(when):
                break
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches the child through /proc")
@pytest.mark.parametrize("sig, when", [
    (signal.SIGINT, "importing torch"),  # the old bundle is untouched and stays valid
    (signal.SIGTERM, "onnx "),  # after the verified FP32 graph was replaced: no manifest at all
])
def test_ctrl_c_and_sigterm_end_cleanly(sig, when, passed, tmp_path):
    out = _copy(passed, tmp_path)
    rc, err = _interrupt(out, sig, when)
    assert (rc, err.strip()) == (130, "rtseg: interrupted")
    assert _promise_holds(out)
    if when != "importing torch":
        assert _leftovers(out) == []
