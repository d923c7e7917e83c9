"""Every CUDA kernel compiles with NVRTC to a cubin for each supported architecture (no GPU needed)."""

from __future__ import annotations

import pytest

pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-python is not installed (pip install 'rtseg[gpu]')")

from rtseg.kernels import cubin as nvrtc  # noqa: E402
from rtseg.kernels import cuda  # noqa: E402


@pytest.mark.parametrize("arch", nvrtc.SUPPORTED_ARCHS)
def test_every_kernel_compiles(arch, tmp_path, monkeypatch):
    monkeypatch.setenv("RTSEG_CACHE_DIR", str(tmp_path))
    cubin = nvrtc.compile_cubin(arch)
    assert cubin[:4] == b"\x7fELF"
    for name in cuda.KERNEL_NAMES:
        assert name.encode() in cubin, f"{name} missing from the {arch} cubin"
    # the second call is served from the disk cache, written atomically (no temporary file left behind)
    files = list((tmp_path / "cubin").iterdir())
    assert len(files) == 1 and files[0].suffix == ".cubin"
    assert nvrtc.compile_cubin(arch) == cubin


def test_cache_key_changes_with_arch_and_source():
    sources = nvrtc._sources()
    key = nvrtc._cache_key(sources, "sm_80", nvrtc.NVRTC_OPTIONS)
    assert key != nvrtc._cache_key(sources, "sm_86", nvrtc.NVRTC_OPTIONS)
    changed = dict(sources, **{"rtseg_pixel.h": sources["rtseg_pixel.h"] + b"\n"})
    assert key != nvrtc._cache_key(changed, "sm_80", nvrtc.NVRTC_OPTIONS)

