"""The device layer on a GPU (marked gpu: skipped without one): buffers, pinned copies, streams, events, and the
stream a kernel takes from its input's ``__cuda_array_interface__``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import rtseg.kernels as K

pytestmark = pytest.mark.gpu


@pytest.fixture
def gpu():
    from rtseg.cuda import driver, streams
    from rtseg.cuda import memory as device

    return device, streams, driver


def test_device_queries(gpu):
    _, _, driver = gpu
    assert driver.device_count() >= 1
    assert driver.device_name(0) and driver.device_arch(0).startswith("sm_")
    assert driver.driver_version() >= (12, 0)


def test_pinned_round_trip_through_a_device_buffer_on_our_stream(gpu):
    device, streams, driver = gpu
    host = device.pinned_empty((48, 64, 3), np.uint8)
    assert host.shape == (48, 64, 3) and host.flags.c_contiguous
    # page-locked for real: the driver knows its flags (it refuses pageable memory)
    flags = driver.check(driver.cuda_driver().cuMemHostGetFlags(host.ctypes.data), "host flags")
    assert int(flags) & driver.cuda_driver().CU_MEMHOSTALLOC_PORTABLE
    host[:] = np.random.default_rng(0).integers(0, 256, host.shape, dtype=np.uint8)
    back = device.pinned_empty(host.shape, np.uint8)
    back[:] = 0
    with streams.Stream() as stream, device.alloc(host.nbytes) as buffer:
        arr = buffer.array(host.shape, np.uint8)
        device.copy_to_device(arr, host, stream)
        device.copy_to_host(back, arr, stream)
        stream.synchronize()
    np.testing.assert_array_equal(back, host)


def test_a_kernel_on_buffers_with_events_around_it(gpu):
    device, streams, _ = gpu
    logits = np.random.default_rng(1).standard_normal((1, 19, 64, 128)).astype(np.float32)
    host_logits = device.pinned_empty(logits.shape, np.float32)
    host_logits[:] = logits
    labels = device.pinned_empty((1, 512, 1024), np.uint8)
    with streams.Stream() as stream, device.alloc(logits.nbytes) as d_logits, device.alloc(labels.nbytes) as d_out:
        start, uploaded, done = streams.Event(), streams.Event(), streams.Event()
        start.record(stream)
        device.copy_to_device(d_logits.array(logits.shape, np.float32), host_logits, stream)
        uploaded.record(stream)
        out = d_out.array(labels.shape, np.uint8)
        K.upsample_argmax(d_logits.array(logits.shape, np.float32), (512, 1024), out=out, stream=stream)
        device.copy_to_host(labels, out, stream)
        done.record(stream)
        total, upload = streams.elapsed(start, done), streams.elapsed(start, uploaded)
        assert done.query()  # elapsed waited for it
        assert 0 < upload < total  # the events are ordered (how long they take: benchmarks/kernels.py)
        for event in (start, uploaded, done):
            event.close()
    np.testing.assert_array_equal(labels, K.upsample_argmax(logits, (512, 1024)))


def test_a_stream_waits_for_an_event_of_another(gpu):
    """Upload on one stream, compute on a second that waits for the first's event: the host never blocks between."""
    device, streams, _ = gpu
    frame = np.random.default_rng(2).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    host = device.pinned_empty(frame.shape, np.uint8)
    host[:] = frame
    result = device.pinned_empty((1, 3, 256, 512), np.float32)
    with streams.Stream() as copies, streams.Stream() as compute, device.alloc(frame.nbytes) as d_frame, \
            device.alloc(result.nbytes) as d_out:
        uploaded = streams.Event(timing=False)
        device.copy_to_device(d_frame.array(frame.shape, np.uint8), host, copies)
        uploaded.record(copies)
        compute.wait(uploaded)
        out = d_out.array(result.shape, np.float32)
        K.preprocess(d_frame.array(frame.shape, np.uint8), (256, 512), out=out, stream=compute)
        device.copy_to_host(result, out, compute)
        streams.synchronize_stream(compute)
    np.testing.assert_array_equal(result, K.preprocess(frame, (256, 512)))


def test_the_stream_named_by_an_input_is_the_one_used(gpu):
    """A frame whose producer names our stream (CAI v3) and no stream= : the kernel goes on that stream. Checked
    by ordering, not timing: the stream is captured into a graph, so the work it receives runs only at replay."""
    device, streams, driver = gpu
    cu = driver.cuda_driver()
    labels = np.random.default_rng(3).integers(0, 19, (30, 40), dtype=np.uint8)
    palette = np.random.default_rng(4).integers(0, 256, (19, 3), dtype=np.uint8)
    colours = device.pinned_empty((30, 40, 3), np.uint8)
    with streams.Stream() as stream, device.alloc(labels.nbytes) as d_labels, device.alloc(colours.nbytes) as d_out:
        device.copy_to_device(d_labels.array(labels.shape, np.uint8), labels, stream)
        stream.synchronize()
        named = dataclasses.replace(d_labels.array(labels.shape, np.uint8), stream=stream.handle)
        out = d_out.array(colours.shape, np.uint8)
        K.colorize(named, palette, out=out, stream=stream)  # loads the kernels' module before the capture
        stream.synchronize()
        mode = cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_RELAXED
        driver.check(cu.cuStreamBeginCapture(cu.CUstream(stream.handle), mode), "capture")
        K.colorize(named, palette, out=out)  # on a stream being captured: recorded, not run
        graph = driver.check(cu.cuStreamEndCapture(cu.CUstream(stream.handle)), "end capture")
        try:
            (nodes, count) = driver.check(cu.cuGraphGetNodes(graph, 0), "graph nodes")
            assert count == 1  # the colorize launch went into this stream's capture
            executable = driver.check(cu.cuGraphInstantiate(graph, 0), "instantiate")
            driver.check(cu.cuGraphLaunch(executable, cu.CUstream(stream.handle)), "replay")
            device.copy_to_host(colours, out, stream)
            stream.synchronize()
            driver.check(cu.cuGraphExecDestroy(executable), "graph release")
        finally:
            driver.check(cu.cuGraphDestroy(graph), "graph release")
    np.testing.assert_array_equal(colours, K.colorize(labels, palette))
