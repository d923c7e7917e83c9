"""Markers: ``gpu`` and ``tensorrt`` tests skip with a reason where the hardware or library is missing."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The reference fixtures live beside the checkout (../shared), never inside it.
REFERENCE_DIR = REPO.parent / "shared" / "fixtures" / "reference"


@functools.cache
def gpu_missing_reason() -> str | None:
    """None when an NVIDIA GPU is usable through cuda-python, else why not."""
    if importlib.util.find_spec("cuda") is None or importlib.util.find_spec("cuda.bindings") is None:
        return "cuda-python is not installed (pip install 'rtseg[gpu]')"
    try:
        from cuda.bindings import runtime as cudart

        err, count = cudart.cudaGetDeviceCount()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the driver means no GPU here
        return f"no CUDA driver: {exc}"
    if int(err) != 0 or count < 1:
        return "no NVIDIA GPU on this machine"
    return None


@functools.cache
def tensorrt_missing_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install 'rtseg[tensorrt]'; needs an NVIDIA GPU)"
    return gpu_missing_reason()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tensorrt" in item.keywords and (reason := tensorrt_missing_reason()):
            item.add_marker(pytest.mark.skip(reason=reason))
        elif "gpu" in item.keywords and (reason := gpu_missing_reason()):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference fixtures not found at {REFERENCE_DIR} (they live in ../shared, outside a fresh clone)")
    return REFERENCE_DIR


# The weights every shared test bundle is exported from: the demo's trained street Fast-SCNN (19 Cityscapes classes).
# Untrained weights predict one class on every pixel of every frame, so label comparisons would compare constants.
STREET_WEIGHTS = REPO / "rtseg" / "demo" / "weights" / "fast_scnn_street.pth"


def guard_segments(seg, frames, min_classes: int = 3) -> None:
    """The bundle really segments the frames a test uses: each frame gives several classes and no two consecutive
    frames give the same labels (otherwise a test comparing labels could not tell one frame from another)."""
    import numpy as np

    labels = [seg.segment(np.ascontiguousarray(f)).labels for f in frames]
    classes = [len(np.unique(lab)) for lab in labels]
    assert min(classes) >= min_classes, f"the test bundle gives too few classes per frame: {classes}"
    same = [i for i in range(1, len(labels)) if np.array_equal(labels[i], labels[i - 1])]
    assert not same, f"the test bundle gives frames {same} the labels of the frame before"


def street_bgr(count: int, h: int, w: int, seed: int = 0):
    """``count`` street-like BGR frames (rtseg.scenes), the frames the runtime, eval and serve tests segment."""
    import numpy as np

    from rtseg.scenes import synthetic_scenes

    return np.ascontiguousarray(synthetic_scenes(count, h, w, seed=seed)[..., ::-1])


def _export_fast_scnn(out: Path, *extra: str) -> Path:
    from rtseg.cli import main

    code = main(["export", "--model", "fast_scnn", "--weights", str(STREET_WEIGHTS), "--num-classes", "19",
                 "--input-size", "64x128", *extra, "--out", str(out)])
    assert code == 0
    _guard_bundle(out)
    return out


def _guard_bundle(out: Path) -> None:
    from rtseg.runtime import load

    with load(out, backend="onnxruntime", device="cpu") as seg:
        guard_segments(seg, street_bgr(6, 64, 128))


@pytest.fixture(scope="session")
def fast_scnn_bundle(tmp_path_factory) -> Path:
    """A small verified Fast-SCNN bundle (the demo's trained street weights, fixed 64x128 input), built once."""
    return _export_fast_scnn(tmp_path_factory.mktemp("bundle") / "fast_scnn")


@pytest.fixture(scope="session")
def fast_scnn_dynamic_bundle(tmp_path_factory) -> Path:
    """The same model exported for any size from 64x128 to 128x256 (optimised for 64x128)."""
    return _export_fast_scnn(tmp_path_factory.mktemp("bundle") / "fast_scnn_dynamic", "--dynamic", "64x128:128x256")


# One small Fast-SCNN bundle (the demo's trained street weights, 19 classes, 64x128, dynamic 32x64 to 128x256),
# exported once per session and shared by the runtime, eval and bench tests.
@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory):
    from rtseg.export.pipeline import ExportOptions, run_export

    out = tmp_path_factory.mktemp("runtime") / "fast_scnn"
    opts = ExportOptions(out=out, model="fast_scnn", weights=STREET_WEIGHTS, num_classes=19, input_size=(64, 128),
                         dynamic=((32, 64), (128, 256)), calib_frames=2)
    assert run_export(opts, say=lambda line: None).passed
    _guard_bundle(out)
    return out


@pytest.fixture(autouse=True)
def _keep_working_directory(request):
    """Some libraries change the working directory into a temporary folder and leave it there; once that folder is
    deleted, every later subprocess (Ray's, GStreamer's) fails with ENOENT. Put it back after each test, loudly."""
    import os
    import warnings

    start = os.getcwd()
    yield
    try:
        now = os.getcwd()
    except FileNotFoundError:
        now = None
    if now != start:
        os.chdir(start)
        warnings.warn(f"{request.node.nodeid} left the working directory at {now}; restored", stacklevel=1)
