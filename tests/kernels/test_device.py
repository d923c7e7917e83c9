"""The device layer without a GPU: device arrays, the __cuda_array_interface__ stream entry, the one-device rule,
the stream a call runs on; and the GPU extras: cuda-python and NVRTC of one CUDA major, one ONNX Runtime."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import tomllib
from packaging.requirements import Requirement

from rtseg.errors import RtsegError
from rtseg.cuda import nvrtc
from rtseg.cuda.memory import DeviceArray, as_device_array, cai_stream, common_device
from rtseg.cuda.streams import stream_for

from ..conftest import REPO


class Exported:
    """A foreign device array: nothing but ``__cuda_array_interface__``."""

    def __init__(self, **interface):
        self.__cuda_array_interface__ = interface


def interface(**extra) -> dict:
    return {"shape": (2, 3), "typestr": "<f4", "data": (0x7000, False), "strides": None, "version": 3, **extra}


def test_cai_stream_entry():
    assert cai_stream(interface()) is None  # absent: nothing to order after
    assert cai_stream(interface(stream=None)) is None
    assert cai_stream(interface(stream=1)) == 1  # legacy default stream, also the driver's CU_STREAM_LEGACY
    assert cai_stream(interface(stream=2)) == 2  # per-thread default stream
    assert cai_stream(interface(stream=0x55D0_0000_1230)) == 0x55D0_0000_1230
    assert cai_stream(interface(stream=np.int64(7))) == 7
    with pytest.raises(RtsegError, match="stream is 0, which the protocol forbids"):
        cai_stream(interface(stream=0))
    for bad in ("1", 1.0, True):
        with pytest.raises(RtsegError, match="must be an integer stream handle"):
            cai_stream(interface(stream=bad))


def test_foreign_arrays_keep_their_stream_and_strides():
    arr = as_device_array(Exported(**interface(strides=(4, 8), stream=0x1234)))
    assert (arr.ptr, arr.shape, arr.dtype, arr.strides, arr.stream) == (0x7000, (2, 3), np.float32, (1, 2), 0x1234)
    assert as_device_array(Exported(**interface())).stream is None
    with pytest.raises(RtsegError, match="forbids"):
        as_device_array(Exported(**interface(stream=0)))


def test_device_array_exports_what_it_holds():
    arr = DeviceArray(0x9000, (4, 5), np.dtype(np.uint16), (10, 2), device=0, stream=0x42)
    cai = arr.__cuda_array_interface__
    assert cai["strides"] == (20, 4) and cai["typestr"] == "<u2" and cai["stream"] == 0x42
    assert "stream" not in DeviceArray(0x9000, (4, 5), np.uint16).__cuda_array_interface__
    assert DeviceArray(0x9000, (4,), np.uint8, stream=0).__cuda_array_interface__["stream"] == 1  # never 0
    back = as_device_array(Exported(**cai))
    assert (back.shape, back.strides, back.dtype, back.stream) == (arr.shape, arr.strides, arr.dtype, arr.stream)
    assert arr.nbytes == 40 and not arr.is_contiguous
    assert DeviceArray(0, (4, 5), np.uint16, (5, 1)).is_contiguous


def test_one_device_per_call():
    a, b = DeviceArray(1, (2,), np.uint8, device=1), DeviceArray(2, (2,), np.uint8, device=1)
    assert common_device({"logits": a, "out": b}, "upsample_argmax") == 1
    c = DeviceArray(3, (2,), np.uint8, device=0)
    with pytest.raises(RtsegError) as info:
        common_device({"frame": a, "labels": b, "out": c}, "overlay")
    message = str(info.value)
    assert "\n" not in message
    assert message == ("overlay: inputs and outputs must be on one GPU, got frame on cuda:1, labels on cuda:1, "
                       "out on cuda:0; move them to one device")


def test_the_stream_a_call_runs_on():
    plain = DeviceArray(1, (2,), np.uint8)
    a, b = DeviceArray(1, (2,), np.uint8, stream=0xA), DeviceArray(2, (2,), np.uint8, stream=0xB)
    assert stream_for([plain, plain]) == (0, ())  # nobody names one: the default stream (no torch CUDA here)
    assert stream_for([plain, a, b]) == (0xA, (0xB,))  # the first producer's stream, ordered after the other's
    assert stream_for([a, b, DeviceArray(3, (2,), np.uint8, stream=0xB)]) == (0xA, (0xB,))  # each waited for once
    assert stream_for([a, b], stream=0xC) == (0xC, (0xA, 0xB))  # the caller's stream wins, after both producers
    assert stream_for([a], stream=0xA) == (0xA, ())


# ---------------------------------------------------------------------------------------------------------------
# The GPU extras


def extras() -> dict[str, list[Requirement]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {name: [Requirement(r) for r in reqs] for name, reqs in project["optional-dependencies"].items()}


def cuda_majors(requirement: Requirement) -> set[int]:
    """The CUDA major versions a cuda-python requirement admits."""
    return {major for major in range(11, 16)
            if any(requirement.specifier.contains(f"{major}.{minor}") for minor in range(10))}


def test_cuda_python_and_nvrtc_of_one_major_in_every_extra():
    pinned = {}
    for extra, requirements in extras().items():
        names = {r.name: r for r in requirements}
        if "cuda-python" not in names:
            continue
        majors = cuda_majors(names["cuda-python"])
        assert len(majors) == 1, f"[{extra}] cuda-python admits CUDA {sorted(majors)}: pin one major"
        pinned[extra] = major = majors.pop()
        wheels = {name for name in names if name.startswith("nvidia-cuda-nvrtc")}
        if extra in ("gpu", "dev"):  # the extras that compile the kernels
            assert wheels == {nvrtc.nvrtc_wheel(major)}, f"[{extra}] needs the NVRTC wheel of CUDA {major}"
        else:
            assert wheels <= {nvrtc.nvrtc_wheel(major)}
    assert {"gpu", "dev"} <= set(pinned) and len(set(pinned.values())) == 1, pinned


def test_no_extra_installs_two_onnx_runtimes():
    for extra, requirements in extras().items():
        names = {r.name for r in requirements}
        assert not {"onnxruntime", "onnxruntime-gpu"} <= names, f"[{extra}] installs both ONNX Runtime wheels"
    # the GPU build is its own extra, for the CUDA major the rest of the GPU stack uses (1.27+ is CUDA 13)
    (ort_gpu,) = extras()["ort-gpu"]
    assert ort_gpu.specifier.contains("1.26.0") and not ort_gpu.specifier.contains("1.27.0")
    assert not any(r.name == "onnxruntime-gpu" for name, reqs in extras().items() if name != "ort-gpu" for r in reqs)


def test_installed_cuda_python_loads_the_nvrtc_of_its_major():
    pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-python is not installed (pip install 'rtseg[gpu]')")
    installed = importlib.metadata.version("cuda-bindings")
    assert nvrtc.nvrtc_version()[0] == nvrtc.bindings_major() == int(installed.split(".")[0]), (
        f"cuda-bindings {installed} loaded NVRTC {nvrtc.nvrtc_version()}: reinstall with pip install -e '.[dev]'")
    assert nvrtc.nvrtc_wheel(12) == "nvidia-cuda-nvrtc-cu12" and nvrtc.nvrtc_wheel(13) == "nvidia-cuda-nvrtc"
