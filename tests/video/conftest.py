"""A small real bundle (Fast-SCNN, untrained, dynamic 64x64 to 384x640) exported once per session, and test media."""

from __future__ import annotations

import shutil

import pytest

from .media import make_video

av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'rtseg[video]')")


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    pytest.importorskip("torch", reason="exporting the test bundle needs torch (pip install 'rtseg[export]')")
    from rtseg.export.pipeline import ExportOptions, run_export

    out = tmp_path_factory.mktemp("bundle") / "fast_scnn"
    # dynamic: the tests run it at 64x96 (fast) and, where they need a model slower than a 30 fps camera, larger
    run_export(ExportOptions(out=out, model="fast_scnn", num_classes=19, input_size=(64, 96),
                             dynamic=((64, 64), (384, 640)), precision="fp32", calib_frames=1), say=lambda line: None)
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
