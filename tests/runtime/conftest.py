"""One small Fast-SCNN bundle (untrained weights, 64x128, dynamic 32x64 to 128x256) shared by the runtime tests."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory):
    from rtseg.export.pipeline import ExportOptions, run_export

    out = tmp_path_factory.mktemp("runtime") / "fast_scnn"
    opts = ExportOptions(out=out, model="fast_scnn", num_classes=19, input_size=(64, 128),
                         dynamic=((32, 64), (128, 256)), calib_frames=2)
    assert run_export(opts, say=lambda line: None).passed
    return out


@pytest.fixture
def bundle_copy(small_bundle, tmp_path):
    """A private copy a test may damage."""
    dst = tmp_path / "bundle"
    shutil.copytree(small_bundle, dst)
    return dst
