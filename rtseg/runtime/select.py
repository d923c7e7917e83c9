"""Which backend runs a bundle: ``auto`` tries the TensorRT engine, then ONNX Runtime on CUDA, then on the CPU.

Which graph runs where: the FP16 graph on a GPU (it is what the engine is built from, and what GPUs run fast). On
the CPU, :func:`cpu_choice`: the fastest runner and precision the bundle holds that passed its gate, by the rule
measured with benchmarks/precision.py (docs/precision.md). ``precision=`` overrides. Every choice is recorded with
its reason, so ``Segmenter.describe()`` says why a bundle runs where it does."""

from __future__ import annotations

import functools
import importlib.util

from ..bundle import Bundle, check_artifact
from ..errors import RtsegError
from ..sizes import parse_device
from .base import Runner

BACKENDS = ("auto", "tensorrt", "onnxruntime", "openvino", "torch")
PRECISIONS = ("fp16", "fp32", "int8", "bf16")


@functools.cache
def gpu_missing_reason() -> str | None:
    """None when the CUDA driver sees a GPU, else why not (one line)."""
    if importlib.util.find_spec("cuda") is None or importlib.util.find_spec("cuda.bindings") is None:
        return "cuda-python is not installed, so no GPU can be used (pip install 'rtseg[gpu]')"
    from ..cuda.driver import device_count  # the CUDA layer's driver: one cuInit, one place

    try:
        count = device_count()
    except Exception:  # noqa: BLE001 - RtsegError, or cuda-python raising where libcuda is absent: no GPU here
        return "no CUDA driver on this machine"
    if count < 1:
        return "no NVIDIA GPU on this machine"
    return None


def choose_runner(bundle: Bundle, backend: str = "auto", device: str | None = None, precision: str | None = None,
                  weights=None, threads: int | None = None) -> tuple[Runner, str]:
    """(runner, why) for the bundle; the runner is not yet active."""
    if backend not in BACKENDS:
        raise RtsegError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if precision not in (None, *PRECISIONS):
        raise RtsegError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    device = parse_device(device)
    if backend == "openvino" and device not in (None, "cpu"):
        raise RtsegError(f"the OpenVINO runner runs on the CPU only, not {device}; drop --device or use cpu")
    if device is not None and device.startswith("cuda") and (reason := gpu_missing_reason()):
        raise RtsegError(f"device {device} was asked for, but {reason}; use the CPU: --device cpu (device='cpu'"
                         f" in Python)")
    if backend == "tensorrt":
        return _tensorrt(bundle, device), "asked for (--backend tensorrt)"
    if backend == "torch":
        dev = device or ("cuda:0" if gpu_missing_reason() is None else "cpu")
        return _torch(bundle, dev, weights), f"asked for (--backend torch) on {dev}"
    if backend == "openvino":
        prec = precision or cpu_choice(bundle, "openvino")[1]
        return _openvino(bundle, prec, threads), f"asked for (--backend openvino), {prec}"
    if backend == "onnxruntime":
        dev = device or ("cuda:0" if _ort_cuda_missing() is None else "cpu")
        return _onnxruntime(bundle, dev, precision, threads), f"asked for (--backend onnxruntime) on {dev}"
    return _auto(bundle, device, precision, threads)


def _auto(bundle: Bundle, device: str | None, precision, threads) -> tuple[Runner, str]:
    passed_over = []
    if device != "cpu":
        gpu = gpu_missing_reason()
        if gpu is None and bundle.artifact_path("engine") is not None:
            try:
                return _tensorrt(bundle, device), "the bundle's TensorRT engine fits this GPU and TensorRT version"
            except RtsegError as exc:
                passed_over.append(f"TensorRT engine not used: {exc}")
        elif gpu is None:
            passed_over.append("the bundle has no TensorRT engine")
        if gpu is None and (ort := _ort_cuda_missing()) is None:
            runner = _onnxruntime(bundle, device or "cuda:0", precision, threads)
            return runner, "; ".join([*passed_over, "ONNX Runtime's CUDA provider is available"])
        passed_over.append(gpu or ort)
        if device is not None:  # a GPU was asked for and none of the GPU backends can run
            raise RtsegError(f"device {device} was asked for, but {'; '.join(passed_over)}")
    if precision is None or (precision == "int8" and bundle.artifact_path("onnx_int8") is not None):
        backend, precision, why = cpu_choice(bundle)  # int8 asked for: on its fastest runner
    else:
        backend, why = ("openvino", "BF16 runs on OpenVINO") if precision == "bf16" else ("onnxruntime", "asked for")
    runner = _openvino(bundle, precision, threads) if backend == "openvino" else \
        _onnxruntime(bundle, "cpu", precision, threads)
    return runner, f"{why}" + (f" ({'; '.join(passed_over)})" if passed_over else " (device='cpu')")


def _gate_passed(bundle: Bundle, key: str) -> bool:
    return bool((bundle.manifest.verification.get(key) or {}).get("passed"))


def cpu_choice(bundle: Bundle, backend: str | None = None) -> tuple[str, str, str]:
    """(backend, precision, why) of the fastest CPU runner the bundle holds that passed its gate.

    The rule, measured by benchmarks/precision.py (one thread, CPU time per inference at 512x1024, Fast-SCNN,
    BiSeNetV1 and FCN-ResNet50; docs/precision.md): the INT8 graph, on OpenVINO where it is installed (2.3x to 10x
    ONNX Runtime FP32 on a CPU with AMX; the same graph on ONNX Runtime 1.3x to 3.5x), else on ONNX Runtime; else
    OpenVINO BF16 where the bundle's BF16 gate passed and the CPU has BF16; else the FP32 graph on ONNX Runtime
    (OpenVINO FP32 0.83x to 0.95x of it). ``backend`` limits the choice to one runner."""
    from .openvino import cpu_capabilities, openvino_missing_reason

    if bundle.artifact_path("onnx_int8") is not None and _gate_passed(bundle, "onnx_int8"):
        report = bundle.manifest.verification["onnx_int8"]
        why = f"the bundle's INT8 graph passed its gate ({100 * report['agreement']:.2f}% agreement with FP32)"
        if backend is None:
            missing = openvino_missing_reason()
            on_openvino = bundle.manifest.verification.get("onnx_int8_openvino")
            if not missing and on_openvino is not None and not on_openvino.get("passed", False):
                missing = (f"it failed its gate there ({100 * on_openvino['agreement']:.2f}% agreement with FP32);"
                           f" ONNX Runtime runs it instead")
            backend = "onnxruntime" if missing else "openvino"
            why += ("; OpenVINO runs it fastest, but " + missing) if missing else "; OpenVINO runs it fastest"
            if on_openvino is not None and not missing:
                why += f" ({100 * on_openvino['agreement']:.2f}% agreement there)"
        return backend, "int8", why
    bf16 = _gate_passed(bundle, "openvino_bf16")
    if bf16 and backend in (None, "openvino"):
        missing = openvino_missing_reason() or (None if "BF16" in cpu_capabilities() else "this CPU has no BF16")
        if missing is None:
            return "openvino", "bf16", "the bundle's BF16 gate passed and this CPU runs BF16: OpenVINO BF16"
        if backend is None:
            return "onnxruntime", "fp32", f"ONNX Runtime FP32 on the CPU (BF16 passed its gate, but {missing})"
    why = "no INT8 graph or BF16 gate in the bundle" if not bf16 else "BF16 not asked for"
    return backend or "onnxruntime", "fp32", f"FP32 on the CPU ({why}; ONNX Runtime is the fastest FP32 engine)"


def _openvino(bundle: Bundle, precision: str, threads) -> Runner:
    from .openvino import OpenVinoRunner, openvino_missing_reason

    if (reason := openvino_missing_reason()) is not None:
        raise RtsegError(f"backend openvino: {reason}")
    if precision == "fp16":
        raise RtsegError("the OpenVINO runner runs fp32, bf16 or int8 on the CPU; fp16 is the GPU's graph")
    key = "onnx_int8" if precision == "int8" else "onnx"
    if precision == "int8" and bundle.artifact_path(key) is None:
        raise RtsegError(f"the bundle {bundle.root} has no INT8 graph; re-export it with --precision int8")
    return OpenVinoRunner(check_artifact(bundle, key), precision, threads)


def _ort_cuda_missing() -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    from .onnxruntime import available_providers

    if "CUDAExecutionProvider" not in available_providers():
        return "this ONNX Runtime has no CUDA provider (the CPU package is installed, not onnxruntime-gpu)"
    return gpu_missing_reason()


def _graph_for(bundle: Bundle, on_gpu: bool, precision: str | None) -> str:
    if precision == "int8":
        if bundle.artifact_path("onnx_int8") is None:
            raise RtsegError(f"the bundle {bundle.root} has no INT8 graph; re-export it with --precision int8")
        return "onnx_int8"
    if precision == "bf16":
        raise RtsegError("BF16 runs on OpenVINO only: use backend='openvino' (--backend openvino)")
    has_fp16 = bundle.artifact_path("onnx_fp16") is not None
    if precision == "fp16" and not has_fp16:
        raise RtsegError(f"the bundle {bundle.root} has no FP16 graph; re-export it with --precision fp16")
    if precision == "fp16" or (precision is None and on_gpu and has_fp16):
        return "onnx_fp16"
    return "onnx"


def _onnxruntime(bundle: Bundle, device: str, precision, threads) -> Runner:
    from .onnxruntime import OnnxRuntimeRunner

    if importlib.util.find_spec("onnxruntime") is None:
        from ..errors import missing_dependency

        raise missing_dependency("onnxruntime", "video")
    on_gpu = device.startswith("cuda")
    path = check_artifact(bundle, _graph_for(bundle, on_gpu, precision))
    return OnnxRuntimeRunner(path, "cuda" if on_gpu else "cpu", device, threads)


def _tensorrt(bundle: Bundle, device: str | None) -> Runner:
    from .tensorrt import TensorRTRunner, check_engine_stamp, tensorrt_missing_reason

    if (reason := tensorrt_missing_reason()) is not None:
        raise RtsegError(f"--backend tensorrt: {reason}")

    if device == "cpu":
        raise RtsegError("TensorRT runs only on a GPU; drop device='cpu' or use --backend onnxruntime")
    check_engine_stamp(bundle)  # TensorRT version and GPU, with the rebuild command in the error
    return TensorRTRunner(check_artifact(bundle, "engine"), device=device or "cuda:0")


def _torch(bundle: Bundle, device: str, weights) -> Runner:
    from pathlib import Path

    from ..files import sha256_file
    from .torch import TorchRunner

    model = bundle.manifest.model
    source = model.source
    if model.family == "onnx":
        raise RtsegError(f"the bundle {bundle.root} was made from an ONNX file, so there is no PyTorch model to run;"
                         f" use --backend onnxruntime")
    recorded = source.get("weights")
    checkpoint = Path(weights) if weights is not None else (Path(recorded) if recorded else None)
    if checkpoint is not None:
        if not checkpoint.is_absolute() and not checkpoint.is_file():
            checkpoint = bundle.root / checkpoint
        if not checkpoint.is_file():
            raise RtsegError(f"the torch backend needs the checkpoint {checkpoint}, which is not here; pass"
                             f" weights=PATH (--weights) for {model.name}")
        want = source.get("weights_sha256")
        if want and sha256_file(checkpoint) != want:
            raise RtsegError(f"{checkpoint} is not the checkpoint this bundle was exported from (sha256 differs);"
                             f" pass the right one with --weights")
    return TorchRunner(model.name, model.num_classes, checkpoint, bundle.manifest.output_kind, device)
