"""A thin TensorRT layer: build a strongly typed engine from the FP16 ONNX graph, run it, and check its stamp.

Written to the TensorRT >= 10.12 / 11.x Python API. The network is created with the ``STRONGLY_TYPED`` flag
(required on 10.x, accepted and implied on 11.x), so every layer runs in the type the ONNX graph gives it; there is
no ``BuilderFlag.FP16`` (removed in 11.x). Dynamic H x W gets one optimisation profile (min/opt/max). The timing
cache persists in the user's cache directory, per TensorRT version and GPU, so rebuilds are fast. The builder's
progress is shown as a bar on stderr through an ``IProgressMonitor``.

``tensorrt`` and ``cuda-python`` are imported only inside the functions that need them.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RtsegError
from .bundle import ENGINE_FILE, atomic_path, read_manifest

MIN_VERSION = (10, 12)


def tensorrt_missing_reason() -> str | None:
    """None when TensorRT >= 10.12 and a CUDA GPU are usable here, else one line saying why not."""
    try:
        import tensorrt as trt
    except ModuleNotFoundError:
        return "TensorRT is not installed (pip install 'rtseg[tensorrt]' on a machine with an NVIDIA GPU)"
    except Exception as exc:  # noqa: BLE001 - a broken install (missing libnvinfer) counts as missing
        return f"TensorRT cannot be imported ({str(exc).splitlines()[0][:120]})"
    if _version_tuple(trt.__version__) < MIN_VERSION:
        return f"TensorRT {trt.__version__} is older than 10.12; upgrade with: pip install -U 'tensorrt>=10.12'"
    try:
        gpu_info()
    except RtsegError as exc:
        return str(exc)
    return None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:3] if p.isdigit())


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "major.minor"


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of a CUDA device, through cuda-python."""
    try:
        from cuda.bindings import runtime as cudart
    except ModuleNotFoundError:
        raise RtsegError("cuda-python is not installed; install it with: pip install 'rtseg[gpu]'") from None
    try:
        err, prop = cudart.cudaGetDeviceProperties(device)
    except Exception as exc:  # noqa: BLE001 - no driver raises from the binding
        raise RtsegError(f"no usable CUDA driver ({exc})") from None
    if int(err) != 0:
        raise RtsegError(f"no usable NVIDIA GPU (cudaGetDeviceProperties: {err})")
    name = prop.name.split(b"\0", 1)[0].decode() if isinstance(prop.name, bytes) else str(prop.name)
    return GpuInfo(name, f"{prop.major}.{prop.minor}")


def default_cache_dir() -> Path:
    base = os.environ.get("RTSEG_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "rtseg")
    return Path(base) / "tensorrt"


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
    """An ``IProgressMonitor`` that drives ``bar`` (the class is defined here so the module needs no TensorRT)."""
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

    ``shapes`` is a :class:`~rtseg.export.torch_onnx.Shapes`: one optimisation profile over min/opt/max (H, W).
    """
    import tensorrt as trt

    gpu = gpu_info()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RtsegError(f"TensorRT cannot parse {onnx_path.name}: {errors[:400]}")

    config = builder.create_builder_config()
    if workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    profile = builder.create_optimization_profile()
    lo, opt, hi = (shapes.min or shapes.opt), shapes.opt, (shapes.max or shapes.opt)
    profile.set_shape(input_name, (1, 3, *lo), (1, 3, *opt), (1, 3, *hi))
    config.add_optimization_profile(profile)

    cache_file = (cache_dir or default_cache_dir()) / (
        f"timing-trt{trt.__version__}-sm{gpu.compute_capability.replace('.', '')}.cache")
    cache_bytes = cache_file.read_bytes() if cache_file.is_file() else b""
    timing_cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(timing_cache, ignore_mismatch=False)
    monitor = None
    if progress:
        monitor = progress_monitor(ProgressBar())  # kept alive until the build returns
        config.progress_monitor = monitor

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RtsegError("TensorRT could not build the engine (see the TensorRT messages above); try a larger"
                         " --workspace or --precision fp32")
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(memoryview(plan))
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache_file) as tmp:
            tmp.write_bytes(memoryview(config.get_timing_cache().serialize()))
    except OSError:
        pass  # a read-only cache directory only costs time on the next build
    del monitor
    return {"tensorrt": trt.__version__, "gpu": gpu.name, "compute_capability": gpu.compute_capability}


class EngineRunner:
    """Run an engine on host arrays (verification, tests): copies in, ``execute_async_v3``, copies out."""

    def __init__(self, engine_path: Path):
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        self._trt, self._cudart = trt, cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise RtsegError(f"TensorRT cannot load {engine_path}; rebuild it with rtseg export")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._stream = _check(cudart.cudaStreamCreate())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        trt, cudart = self._trt, self._cudart
        name = self.inputs[0]
        x = np.ascontiguousarray(x.astype(trt.nptype(self.engine.get_tensor_dtype(name))))
        self.context.set_input_shape(name, x.shape)
        buffers, results = [], []
        try:
            ptr = _check(cudart.cudaMalloc(x.nbytes))
            buffers.append(ptr)
            _check(cudart.cudaMemcpy(ptr, x.ctypes.data, x.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            self.context.set_tensor_address(name, int(ptr))
            for out in self.outputs:
                host = np.empty(tuple(self.context.get_tensor_shape(out)),
                                trt.nptype(self.engine.get_tensor_dtype(out)))
                dev = _check(cudart.cudaMalloc(max(host.nbytes, 1)))
                buffers.append(dev)
                self.context.set_tensor_address(out, int(dev))
                results.append((host, dev))
            if not self.context.execute_async_v3(int(self._stream)):
                raise RtsegError("TensorRT execution failed; see the TensorRT messages above")
            _check(cudart.cudaStreamSynchronize(self._stream))
            for host, dev in results:
                _check(cudart.cudaMemcpy(host.ctypes.data, dev, host.nbytes,
                                         cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost))
        finally:
            for b in buffers:
                cudart.cudaFree(b)
        out = results[0][0]
        return out.astype(np.float32) if out.dtype == np.float16 else out


def _check(result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RtsegError(f"CUDA call failed: {err}")
    return rest[0] if len(rest) == 1 else (tuple(rest) or None)


def check_engine_stamp(bundle) -> Path:
    """Check that a bundle's engine was built for this machine (TensorRT version, GPU compute capability).

    Returns the engine path; raises :class:`RtsegError` with the rebuild command when it does not fit.
    ``bundle`` is the bundle directory, its ``rtseg.json`` path, or an already-read manifest dict.
    """
    if isinstance(bundle, dict):
        manifest, root = bundle, Path(bundle.get("_dir", "."))
    else:
        manifest = read_manifest(bundle)
        root = Path(bundle) if Path(bundle).is_dir() else Path(bundle).parent
    rebuild = manifest.get("build", {}).get("command") or f"rtseg export ... --out {root}"
    rebuild = f"{rebuild} --force" if "--force" not in rebuild else rebuild
    engine = (manifest.get("artifacts") or {}).get("engine")
    if not engine:
        raise RtsegError(f"the bundle {root} has no TensorRT engine; build one on this machine with: {rebuild}")
    build = manifest.get("build", {})
    if (reason := tensorrt_missing_reason()) is not None:
        raise RtsegError(f"cannot use the engine in {root}: {reason}")
    import tensorrt as trt

    here = gpu_info()
    problems = []
    if build.get("tensorrt") != trt.__version__:
        problems.append(f"TensorRT {build.get('tensorrt')} (this machine has {trt.__version__})")
    if build.get("compute_capability") != here.compute_capability:
        problems.append(f"compute capability {build.get('compute_capability')} ({build.get('gpu')}; this machine"
                        f" has {here.compute_capability}, {here.name})")
    if problems:
        raise RtsegError(f"the engine in {root} was built for {' and '.join(problems)}; rebuild it with: {rebuild}")
    path = root / engine.get("file", ENGINE_FILE)
    if not path.is_file():
        raise RtsegError(f"the engine file {path} is missing; rebuild it with: {rebuild}")
    return path
