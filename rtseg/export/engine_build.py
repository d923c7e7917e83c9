"""Building a TensorRT engine: a strongly typed engine from the FP16 ONNX graph, with its build stamp.

Written to the TensorRT >= 10.12 / 11.x Python API (checked against NVIDIA/TensorRT's Python bindings and headers
of 10.12 and 11.1). The network is strongly typed, so every layer runs in the type the ONNX graph gives it: on 10.x
through the ``STRONGLY_TYPED`` creation flag; on 11.x every network is strongly typed and that flag is deprecated and
ignored, so none is passed. There is no ``BuilderFlag.FP16`` (removed in 11.x) and no ``EXPLICIT_BATCH``. Dynamic
H x W gets one optimisation profile (min/opt/max). The timing cache persists in the user's cache directory, per
TensorRT version and GPU, so rebuilds are fast. The builder's progress is shown as a bar on stderr through an
``IProgressMonitor``. Running an engine (the name-based I/O API: ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``), whether TensorRT is usable here and whether an engine's stamp fits this machine live in
:mod:`rtseg.runtime.tensorrt`.

``tensorrt`` and ``cuda-python`` are imported only inside the functions that need them.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path


from ..cuda.info import GpuInfo, gpu_info
from ..errors import RtsegError
from ..files import atomic_path
from ..runtime.tensorrt import tensorrt_logger, version_tuple

def strongly_typed_flag_needed(version: str) -> bool:
    """True on TensorRT 10.x, where a network is strongly typed only when created with ``STRONGLY_TYPED``.

    From 11.0 every network is strongly typed and the flag is deprecated and ignored (``NvInfer.h``), so it is not
    passed: the enum value may go in a later release. Its numeric value also moved (1 on 10.x, 0 on 11.x), which is
    why it is always looked up by name.
    """
    return version_tuple(version) < (11,)


def default_cache_dir() -> Path:
    from ..files import cache_dir

    return cache_dir("tensorrt")


def timing_cache_path(trt_version: str, gpu: GpuInfo, cache_dir: Path | None = None) -> Path:
    """The persistent timing cache for one TensorRT version and one GPU model.

    TensorRT refuses a cache whose recorded device properties differ from this device's, and two GPU models can share
    a compute capability (an H100 PCIe and an H100 SXM are both 9.0), so the GPU name is part of the file name.
    """
    gpu_slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu.name).strip("-").lower() or "gpu"
    name = f"timing-trt{trt_version}-sm{gpu.compute_capability.replace('.', '')}-{gpu_slug}.cache"
    return Path(cache_dir or default_cache_dir()) / name


def profile_shapes(dims: Sequence[int], shapes) -> tuple[tuple[int, ...], ...] | None:
    """(min, opt, max) shapes for an NCHW network input with dimensions ``dims`` (-1 where dynamic).

    ``shapes`` is a :class:`~rtseg.bundle.InputSpec`; a static one gives min = opt = max. A dynamic batch
    axis gets 1 and a dynamic channel axis 3; a fixed axis keeps the graph's size, and a fixed H or W that is not the
    requested size is an error. None when every dimension is fixed: TensorRT needs no profile then.
    """
    dims = tuple(int(d) for d in dims)
    if len(dims) != 4:
        raise RtsegError(f"the engine input must be NCHW (4 dimensions), the graph's has shape {list(dims)}")
    if all(d >= 0 for d in dims):
        lo = hi = shapes.opt
    else:
        lo, hi = (shapes.min or shapes.opt), (shapes.max or shapes.opt)
    result = []
    for h, w in (lo, shapes.opt, hi):
        want = (1, 3, int(h), int(w))
        if any(dims[axis] >= 0 and dims[axis] != want[axis] for axis in (2, 3)):
            fixed = ", ".join(f"{'HW'[axis - 2]}={dims[axis]}" for axis in (2, 3) if dims[axis] >= 0)
            raise RtsegError(f"the graph's input has a fixed {fixed} but the engine was asked for {h}x{w};"
                             " export the graph at that size or with --dynamic")
        result.append(tuple(d if d >= 0 else v for d, v in zip(dims, want)))
    if all(d >= 0 for d in dims):
        return None
    return tuple(result)


class ProgressBar:
    """A one-line text bar of the innermost running phase; TensorRT may call it from several threads."""

    def __init__(self, stream=None, width: int = 30):
        self._stream = stream or sys.stderr
        self._width = width
        self._lock = threading.Lock()
        self._phases: dict[str, list[int]] = {}  # name -> [done, total], in start order
        self._last = 0.0

    def start(self, phase: str, steps: int) -> None:
        with self._lock:
            self._phases[phase] = [0, max(1, int(steps))]
            self._draw(force=True)

    def step(self, phase: str, step: int) -> None:
        """``step`` is the index of the step just completed, in [0, steps) (TensorRT's ``stepComplete``)."""
        with self._lock:
            if phase in self._phases:
                state = self._phases[phase]
                state[0] = int(step) + 1
                self._draw(force=state[0] >= state[1])

    def finish(self, phase: str) -> None:
        with self._lock:
            if phase in self._phases:
                self._phases[phase][0] = self._phases[phase][1]  # phases may end early; show them complete
                self._draw(force=True)
            self._phases.pop(phase, None)
            if not self._phases:
                self._stream.write("\n")
                self._stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._phases or (not force and now - self._last < 0.1):
            return
        self._last = now
        name, (done, total) = list(self._phases.items())[-1]
        fill = int(self._width * min(done, total) / total)
        self._stream.write(f"\rTensorRT build [{'#' * fill}{'.' * (self._width - fill)}] {done}/{total}"
                           f" {name[:40]:<40}")
        self._stream.flush()


def progress_monitor(bar: ProgressBar):
    """An ``IProgressMonitor`` that drives ``bar`` (the class is defined here so the module needs no TensorRT).

    The bindings call these methods from TensorRT's build threads (taking the GIL); an exception inside one is
    printed by TensorRT and, in ``step_complete``, cancels the build, so the bar's methods must not raise.
    """
    import tensorrt as trt

    class BuildProgress(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            bar.start(phase_name, num_steps)

        def step_complete(self, phase_name, step):
            bar.step(phase_name, step)
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            bar.finish(phase_name)

    return BuildProgress()


def build_engine(onnx_path: Path, engine_path: Path, input_name: str, shapes, workspace_mib: int | None = None,
                 cache_dir: Path | None = None, progress: bool = True) -> dict:
    """Build a strongly typed engine from ``onnx_path`` into ``engine_path`` (atomically); return its stamp.

    ``shapes`` is a :class:`~rtseg.bundle.InputSpec`: one optimisation profile over min/opt/max (H, W).
    """
    import tensorrt as trt

    gpu = gpu_info()
    logger = tensorrt_logger()
    builder = trt.Builder(logger)
    flags = 0
    if strongly_typed_flag_needed(trt.__version__):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)  # owns weights the network points at: kept until the build is done
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RtsegError(f"TensorRT cannot parse {onnx_path.name}: {errors[:400]}")

    config = builder.create_builder_config()
    if workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    if input_name not in inputs:
        raise RtsegError(f"{onnx_path.name} has no input named {input_name!r} (its inputs: {', '.join(inputs)})")
    profile_dims = profile_shapes(tuple(inputs[input_name].shape), shapes)
    if profile_dims is not None:
        profile = builder.create_optimization_profile()
        try:
            profile.set_shape(input_name, *profile_dims)
        except RuntimeError as exc:
            raise RtsegError(f"TensorRT rejects the profile min/opt/max {[list(d) for d in profile_dims]}: {exc}"
                             ) from None
        if config.add_optimization_profile(profile) < 0:
            raise RtsegError(f"TensorRT rejects the profile min/opt/max {[list(d) for d in profile_dims]}"
                             " (see the TensorRT messages above)")

    cache_file = timing_cache_path(trt.__version__, gpu, cache_dir)
    timing_cache = _attach_timing_cache(config, cache_file)
    monitor = None
    if progress:
        monitor = progress_monitor(ProgressBar())  # must outlive the build; the config also holds it
        config.progress_monitor = monitor

    plan = builder.build_serialized_network(network, config)
    if plan is None or plan.nbytes == 0:
        raise RtsegError("TensorRT could not build the engine (see the TensorRT messages above); try a larger"
                         " --workspace or --precision fp32")
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(memoryview(plan))
    _save_timing_cache(config.get_timing_cache() or timing_cache, cache_file)
    del monitor, parser
    return {"tensorrt": trt.__version__, "gpu": gpu.name, "compute_capability": gpu.compute_capability}


def _attach_timing_cache(config, cache_file: Path):
    """Load the persistent timing cache into ``config``; an unreadable or mismatched file means a fresh cache."""
    try:
        blob = cache_file.read_bytes() if cache_file.is_file() else b""
    except OSError:
        blob = b""
    cache = None
    if blob:
        try:
            cache = config.create_timing_cache(blob)  # None (or an error) for a blob TensorRT cannot read
        except Exception:  # noqa: BLE001 - the cache only saves time; never fail a build over it
            cache = None
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        cache = config.create_timing_cache(b"")  # size 0: a new, empty cache
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache  # to be kept until the engine is built


def _save_timing_cache(cache, cache_file: Path) -> None:
    if cache is None:
        return
    try:
        data = cache.serialize()
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache_file) as tmp:
            tmp.write_bytes(memoryview(data))
    except OSError:
        pass  # a read-only cache directory only costs time on the next build
