"""Each CUDA kernel against its CPU twin, bit for bit (marked gpu: skipped without an NVIDIA GPU).

Device memory comes from rtseg's own device layer (DeviceArray), so these run without a CUDA build of PyTorch;
further tests cover a stream of our own, a thread with no current context, the PTX fallback for GPUs newer than
NVRTC, CuPy arrays, and PyTorch CUDA tensors on a side stream (when those libraries are present). The same
comparisons run without a GPU, on an emulation of the device, in test_cuda_host.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import rtseg.kernels as K

pytestmark = pytest.mark.gpu


class Device:
    """Allocate, upload and download through rtseg's device layer, freeing everything at the end."""

    def __init__(self):
        from rtseg.cuda import memory as device
        from rtseg.cuda import streams

        self.device, self.streams = device, streams
        self.buffers = []

    def upload(self, host: np.ndarray) -> K.DeviceArray:
        host = np.ascontiguousarray(host)
        buffer = self.device.alloc(host.nbytes)
        self.buffers.append(buffer)
        arr = buffer.array(host.shape, host.dtype)
        self.device.copy_to_device(arr, host, stream=0)
        self.streams.synchronize_stream(0)  # ready for kernels on any stream
        return arr

    def empty(self, shape, dtype) -> K.DeviceArray:
        return self.upload(np.zeros(shape, dtype))

    def download(self, arr: K.DeviceArray) -> np.ndarray:
        self.device.synchronize_device()
        host = np.empty(arr.shape, arr.dtype)
        self.device.copy_to_host(host, arr, stream=0)
        self.streams.synchronize_stream(0)
        return host

    def close(self):
        for buffer in self.buffers:
            buffer.close()


@pytest.fixture
def dev():
    d = Device()
    yield d
    d.close()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("case", [(2, 19, 32, 64, 256, 512), (1, 5, 7, 9, 31, 45), (1, 300, 6, 5, 13, 17),
                                  (1, 3, 10, 10, 7, 5)])
def test_upsample_argmax_matches_cpu_twin(dev, case, align_corners, dtype):
    N, C, h, w, H, W = case
    logits = np.random.default_rng(sum(case)).standard_normal((N, C, h, w)).astype(dtype)
    want, want_score = K.upsample_argmax(logits, (H, W), align_corners, return_score=True)
    out, score = dev.empty((N, H, W), K.label_dtype(C)), dev.empty((N, H, W), np.float32)
    K.upsample_argmax(dev.upload(logits), (H, W), align_corners, out=out)
    from rtseg.kernels import cuda

    cuda.upsample_argmax(dev.upload(logits), (H, W), align_corners, out=out, score=score)
    np.testing.assert_array_equal(dev.download(out), want)
    np.testing.assert_array_equal(dev.download(score), want_score)


def test_upsample_argmax_strided_device_input(dev):
    logits = np.random.default_rng(1).standard_normal((1, 8, 12, 14)).astype(np.float32)
    d = dev.upload(np.ascontiguousarray(logits.transpose(0, 2, 3, 1)))  # channels-last memory
    view = K.DeviceArray(d.ptr, (1, 8, 12, 14), d.dtype, (12 * 14 * 8, 1, 14 * 8, 8))
    out = dev.empty((1, 40, 50), np.uint8)
    K.upsample_argmax(view, (40, 50), out=out)
    np.testing.assert_array_equal(dev.download(out), K.upsample_argmax(logits, (40, 50)))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("src,dst", [((480, 640), (512, 1024)), ((37, 53), (100, 61)), ((100, 100), (33, 47))])
def test_preprocess_matches_cpu_twin(dev, src, dst, dtype):
    frame = np.random.default_rng(src[0]).integers(0, 256, (*src, 3), dtype=np.uint8)
    out = dev.empty((1, 3, *dst), dtype)
    K.preprocess(dev.upload(frame), dst, dtype=dtype, out=out)
    np.testing.assert_array_equal(dev.download(out), K.preprocess(frame, dst, dtype=dtype))


@pytest.mark.parametrize("ldtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_overlay_and_colorize_match_cpu_twin(dev, ldtype):
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    labels = rng.integers(0, 22, (20, 30)).astype(ldtype)
    palette = rng.integers(0, 256, (19, 3), dtype=np.uint8)
    out = dev.empty(frame.shape, np.uint8)
    K.overlay(dev.upload(frame), dev.upload(labels), palette, 0.4, out=out)
    np.testing.assert_array_equal(dev.download(out), K.overlay(frame, labels, palette, 0.4))
    in_place = dev.upload(frame)
    K.overlay(in_place, dev.upload(labels), palette, 0.4, out=in_place)
    np.testing.assert_array_equal(dev.download(in_place), K.overlay(frame, labels, palette, 0.4))
    colours = dev.empty((20, 30, 3), np.uint8)
    K.colorize(dev.upload(labels), palette, out=colours)
    np.testing.assert_array_equal(dev.download(colours), K.colorize(labels, palette))


def test_full_size_output_and_a_stream_of_our_own(dev):
    """The deployment shape (19 classes, 128x256 -> 1024x2048) on a stream of our own, plus a batch of two."""
    from rtseg.cuda.streams import Stream

    logits = np.random.default_rng(7).standard_normal((2, 19, 128, 256)).astype(np.float16)
    want = K.upsample_argmax(logits, (1024, 2048))
    with Stream() as stream:  # non-blocking
        out = dev.empty((2, 1024, 2048), np.uint8)
        K.upsample_argmax(dev.upload(logits), (1024, 2048), out=out, stream=stream)
        stream.synchronize()
        np.testing.assert_array_equal(dev.download(out), want)


def test_a_thread_without_a_current_context(dev):
    import threading

    logits = np.random.default_rng(8).standard_normal((1, 6, 9, 11)).astype(np.float32)
    d_logits, out = dev.upload(logits), dev.empty((1, 30, 40), np.uint8)
    errors = []

    def work():
        try:
            K.upsample_argmax(d_logits, (30, 40), out=out, stream=0)
        except Exception as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert not errors
    np.testing.assert_array_equal(dev.download(out), K.upsample_argmax(logits, (30, 40)))


def test_ptx_fallback_loads_and_matches(dev, monkeypatch, tmp_path):
    """The path for a GPU newer than NVRTC: PTX of a virtual architecture, compiled by the driver at load."""
    from rtseg.cuda import nvrtc
    from rtseg.kernels import cuda

    monkeypatch.setenv("RTSEG_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(nvrtc, "compile_target", lambda arch: "compute_75")
    monkeypatch.setattr(cuda, "_modules", {})
    logits = np.random.default_rng(9).standard_normal((1, 7, 13, 17)).astype(np.float16)
    out = dev.empty((1, 50, 61), np.uint8)
    K.upsample_argmax(dev.upload(logits), (50, 61), out=out)
    np.testing.assert_array_equal(dev.download(out), K.upsample_argmax(logits, (50, 61)))
    assert [p.suffix for p in (tmp_path / "cubin").iterdir()] == [".ptx"]


def test_cupy_arrays_through_cuda_array_interface():
    cp = pytest.importorskip("cupy")
    logits = np.random.default_rng(10).standard_normal((19, 24, 32)).astype(np.float32)
    d_logits = cp.asarray(logits)[:, ::-1]  # a negative stride
    out = cp.empty((100, 120), cp.uint8)
    K.upsample_argmax(d_logits, (100, 120), out=out, stream=cp.cuda.get_current_stream().ptr)
    cp.cuda.get_current_stream().synchronize()
    np.testing.assert_array_equal(cp.asnumpy(out), K.upsample_argmax(np.ascontiguousarray(logits[:, ::-1]),
                                                                     (100, 120)))


def test_torch_cuda_tensors_on_the_current_stream():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch build has no CUDA")
    logits = torch.randn(1, 19, 64, 128, device="cuda", dtype=torch.float16)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # logits were made on the default stream
    with torch.cuda.stream(stream):
        labels = K.upsample_argmax(logits, (512, 1024))
        frame = torch.randint(0, 256, (720, 1280, 3), dtype=torch.uint8, device="cuda")
        x = K.preprocess(frame, (512, 1024), dtype=np.float16)
    stream.synchronize()
    assert labels.is_cuda and labels.dtype == torch.uint8
    np.testing.assert_array_equal(labels.cpu().numpy(), K.upsample_argmax(logits.cpu().numpy(), (512, 1024)))
    np.testing.assert_array_equal(x.cpu().numpy(), K.preprocess(frame.cpu().numpy(), (512, 1024), dtype=np.float16))
