"""Each way a user can hand the runtime something wrong gets one RtsegError line that says what to do."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rtseg.cli import main
from rtseg.errors import RtsegError
from rtseg.runtime import load


def _error(fn, match):
    with pytest.raises(RtsegError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_folder(tmp_path):
    _error(lambda: load(tmp_path / "nope"), "no bundle at .*rtseg export")


def test_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    _error(lambda: load(tmp_path), "not an rtseg bundle")


def test_failed_export_folder(bundle_copy):
    (bundle_copy / "rtseg.json").rename(bundle_copy / "rtseg.failed.json")
    _error(lambda: load(bundle_copy), "verification failed")


def test_half_written_manifest(bundle_copy):
    text = (bundle_copy / "rtseg.json").read_text()
    (bundle_copy / "rtseg.json").write_text(text[: len(text) // 2])
    _error(lambda: load(bundle_copy), "half-written")


def test_manifest_of_a_newer_format(bundle_copy):
    man = json.loads((bundle_copy / "rtseg.json").read_text())
    man["format_version"] = 99
    (bundle_copy / "rtseg.json").write_text(json.dumps(man))
    _error(lambda: load(bundle_copy), "newer rtseg.*pip install -U rtseg")


def test_manifest_of_an_older_format(bundle_copy):
    man = json.loads((bundle_copy / "rtseg.json").read_text())
    man["format_version"] = 0
    (bundle_copy / "rtseg.json").write_text(json.dumps(man))
    _error(lambda: load(bundle_copy), "re-export")


def test_changed_artifact_names_the_file_and_the_rebuild(bundle_copy):
    with load(bundle_copy):  # verified once (and cached)
        pass
    with open(bundle_copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    msg = _error(lambda: load(bundle_copy, device="cpu"), "model.onnx changed")
    assert "rtseg export" in msg


def test_missing_artifact(bundle_copy):
    (bundle_copy / "model.fp16.onnx").unlink()
    _error(lambda: load(bundle_copy, precision="fp16"), "model.fp16.onnx is missing.*rtseg export")


@pytest.mark.parametrize("frame, match", [
    (np.zeros((48, 64), np.uint8), "greyscale.*COLOR_GRAY2BGR"),
    (np.zeros((48, 64, 4), np.uint8), "BGRA.*COLOR_BGRA2BGR"),
    (np.zeros((48, 64, 3), np.float32), "uint8"),
    (np.zeros((0, 64, 3), np.uint8), "empty"),
    ([[1, 2, 3]], "NumPy"),
])
def test_frames_that_are_not_bgr_uint8(small_bundle, frame, match):
    with load(small_bundle) as seg:
        _error(lambda: seg.segment(frame), match)


def test_input_size_outside_the_profile(small_bundle):
    _error(lambda: load(small_bundle, input_size=(512, 1024)), "outside the bundle's profile")
    _error(lambda: load(small_bundle, input_size=(70, 128)), "multiple of 32")


def test_tensorrt_without_tensorrt(small_bundle):
    from rtseg.runtime.tensorrt import tensorrt_missing_reason

    if tensorrt_missing_reason() is None:
        pytest.skip("TensorRT is usable here")
    _error(lambda: load(small_bundle, backend="tensorrt"), "--backend tensorrt: TensorRT .*pip install")


def test_cuda_without_a_gpu(small_bundle):
    from rtseg.runtime.select import gpu_missing_reason

    if gpu_missing_reason() is None:
        pytest.skip("this machine has a GPU")
    _error(lambda: load(small_bundle, device="cuda"), "device cuda:0 was asked for.*device='cpu'")


def test_unknown_backend_and_device(small_bundle):
    _error(lambda: load(small_bundle, backend="tensorflow"), "unknown backend")
    _error(lambda: load(small_bundle, device="tpu"), "unknown device")


def test_torch_backend_needs_the_recorded_checkpoint(small_bundle, tmp_path):
    _error(lambda: load(small_bundle, backend="torch", weights=tmp_path / "x.pth"), "not here.*--weights")


def test_info_command(small_bundle, bundle_copy, capsys):
    assert main(["info", str(small_bundle)]) == 0
    out = capsys.readouterr().out
    assert "sha256 ok" in out and "onnxruntime cpu" in out
    with open(bundle_copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    assert main(["info", str(bundle_copy)]) == 1
    assert "model.onnx changed" in capsys.readouterr().out
    assert main(["info", str(bundle_copy / "nothing")]) == 2
