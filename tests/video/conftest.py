"""A small real bundle (Fast-SCNN, the demo's trained street weights, dynamic 64x64 to 384x640) exported once per
session, and test media (numbered street frames)."""

from __future__ import annotations

import shutil

import pytest

from ..conftest import STREET_WEIGHTS, guard_segments
from .media import make_video, numbered_frame

av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'rtseg[video]')")


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    pytest.importorskip("torch", reason="exporting the test bundle needs torch (pip install 'rtseg[export]')")
    from rtseg.export.pipeline import ExportOptions, run_export

    out = tmp_path_factory.mktemp("bundle") / "fast_scnn"
    # dynamic: the tests run it at 64x96 (fast) and at the other sizes their media have
    assert run_export(ExportOptions(out=out, model="fast_scnn", weights=STREET_WEIGHTS, num_classes=19,
                                    input_size=(64, 96), dynamic=((64, 64), (384, 640)), precision="fp32",
                                    calib_frames=1), say=lambda line: None).passed
    from rtseg.runtime import load

    with load(out, backend="onnxruntime", device="cpu") as seg:  # the frames the video tests use really segment
        guard_segments(seg, [numbered_frame(i, 64, 96) for i in range(8)])
    return out


@pytest.fixture(scope="session")
def seg(bundle):
    from rtseg.runtime import load

    with load(bundle, backend="onnxruntime", device="cpu") as s:
        yield s


@pytest.fixture(scope="session")
def video300(tmp_path_factory):
    """300 numbered 64x96 frames at 30 fps, H.264 in mp4."""
    return make_video(tmp_path_factory.mktemp("media") / "v300.mp4", 300, (64, 96), fps=30)


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {package}; .ci/run does)")
    return path
