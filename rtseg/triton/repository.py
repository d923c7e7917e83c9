"""Write a bundle as a Triton Inference Server model repository.

Layout (one model per bundle, inside a repository that may hold others)::

    DIR/<name>/config.pbtxt     the model configuration, built as Triton's own ModelConfig protobuf
    DIR/<name>/1/model.onnx     the ONNX graph (platform onnxruntime_onnx), or 1/model.plan for the engine
    DIR/<name>/rtseg.json       the bundle manifest: classes, palette, normalisation, the upsample still owed
    DIR/<name>/README.md        how Triton serves it and what the client does before and after

The ONNX graph gets a variable batch axis (see :mod:`rtseg.triton.batch_axis`) so that Triton's dynamic batcher can
stack requests; a graph that does not batch correctly stays at batch 1 (``max_batch_size: 0``) and the README says
why. The engine in a bundle is built for batch 1, so a ``tensorrt_plan`` model is never batched by Triton.
The model directory is written beside its final place and renamed in, so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import RtsegError, require
from ..bundle import read_manifest
from ..files import sha256_file

GRAPHS = ("auto", "onnx", "onnx_fp16", "engine")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
          "uint8": "TYPE_UINT8"}


@dataclass
class RepositoryOptions:
    bundle: Path
    repo: Path
    name: str | None = None  # default: the bundle's model name
    graph: str = "auto"  # auto: the engine where the bundle has one, else the FP32 ONNX graph
    max_batch: int = 8
    queue_delay_us: int = 2000
    force: bool = False


@dataclass
class TritonModel:
    """What the repository states about one model: the Triton view of a bundle."""

    name: str
    platform: str  # onnxruntime_onnx | tensorrt_plan
    graph: str  # the bundle artifact it serves
    model_file: str  # model.onnx | model.plan
    max_batch_size: int  # 0: no batching by Triton (dims then include the batch axis)
    batch_reason: str | None  # why max_batch_size is 0, when it is
    input_name: str
    input_dims: list[int]  # without the batch axis when max_batch_size > 0; -1 for a dynamic axis
    output_name: str
    output_type: str
    output_dims: list[int]
    profile: dict | None  # {"min": [...], "opt": [...], "max": [...]} full NCHW shapes, batch included
    queue_delay_us: int


def write_repository(opts: RepositoryOptions, say=None) -> Path:
    """Write the model directory for ``opts.bundle`` into the repository ``opts.repo``; return its path."""
    say = say or (lambda line: print(line, flush=True))
    manifest = read_manifest(opts.bundle)
    bundle = Path(opts.bundle)
    bundle = bundle if bundle.is_dir() else bundle.parent
    name = opts.name or manifest["model"]["name"]
    if not _NAME.match(name):
        raise RtsegError(f"model name {name!r}: use letters, digits, '_', '-' and '.' only (pass --name)")
    if opts.max_batch < 1:
        raise RtsegError(f"--max-batch {opts.max_batch}: must be at least 1")
    target = Path(opts.repo) / name
    if target.exists() and not opts.force:
        raise RtsegError(f"{target} already exists; pass --force to replace it")

    graph = _choose_graph(manifest, opts.graph)
    source = bundle / manifest["artifacts"][graph]["file"]
    if not source.is_file() or sha256_file(source) != manifest["artifacts"][graph]["sha256"]:
        raise RtsegError(f"{source} is missing or not the file the bundle was verified with; re-run rtseg export")
    onnx_file = bundle / manifest["artifacts"]["onnx"]["file"]

    try:
        Path(opts.repo).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=opts.repo))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes 0700; a server running as another user must read it
    except OSError as exc:
        raise RtsegError(f"cannot write the repository {opts.repo}: {exc.strerror or exc}; pass a writable DIR"
                         ) from None
    try:
        (staging / "1").mkdir()
        model = _plan_model(manifest, name, graph, source, onnx_file, opts, staging / "1")
        (staging / "config.pbtxt").write_text(config_text(model))
        shutil.copyfile(bundle / "rtseg.json", staging / "rtseg.json")
        from .readme import readme_text

        (staging / "README.md").write_text(readme_text(model, manifest))
        _swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    batching = (f"dynamic batching up to {model.max_batch_size}" if model.max_batch_size
                else f"batch 1 ({model.batch_reason})")
    say(f"wrote {target}: {model.platform} {model.model_file}, {batching}")
    return target


def _choose_graph(manifest: dict, graph: str) -> str:
    if graph not in GRAPHS:
        raise RtsegError(f"--graph {graph!r}: choose one of {', '.join(GRAPHS)}")
    artifacts = manifest.get("artifacts", {})
    if graph == "auto":
        return "engine" if artifacts.get("engine") else "onnx"
    if not artifacts.get(graph):
        raise RtsegError(f"the bundle has no {graph} artifact; pick another --graph or re-export")
    return graph


def _plan_model(manifest: dict, name: str, graph: str, source: Path, onnx_file: Path, opts: RepositoryOptions,
                version_dir: Path) -> TritonModel:
    """Copy (or batch-enable and write) the graph into ``version_dir``; return what the config must state."""
    onnx = require("onnx", "triton")  # the I/O shapes are read from the ONNX graph, also for the engine
    inp, out = manifest["input"], manifest["output"]
    in_dims, out_dims = _graph_dims(onnx_file)
    max_batch, reason = 0, "the bundle's TensorRT engine is built for batch 1"
    if graph == "engine":
        platform, model_file = "tensorrt_plan", "model.plan"
        shutil.copyfile(source, version_dir / model_file)
    else:
        from .batch_axis import batched_graph, check_batched

        platform, model_file = "onnxruntime_onnx", "model.onnx"
        batched = batched_graph(source)
        reason = check_batched(source, batched, _opt_hw(inp))
        if reason is None:
            max_batch = opts.max_batch
            onnx.save(batched, str(version_dir / model_file))
        else:
            shutil.copyfile(source, version_dir / model_file)
    if max_batch:
        in_dims, out_dims = in_dims[1:], out_dims[1:]
    return TritonModel(name=name, platform=platform, graph=graph, model_file=model_file, max_batch_size=max_batch,
                       batch_reason=None if max_batch else reason, input_name=inp["name"], input_dims=in_dims,
                       output_name=out["name"], output_type=_TYPES[out["dtype"]], output_dims=out_dims,
                       profile=_profile(inp, max(1, max_batch)), queue_delay_us=opts.queue_delay_us)


def _graph_dims(onnx_file: Path) -> tuple[list[int], list[int]]:
    """Input and output dims of the graph, -1 where an axis is symbolic."""
    import onnx

    model = onnx.load(str(onnx_file), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inp = [v for v in model.graph.input if v.name not in inits][0]
    out = model.graph.output[0]

    def dims(value):
        return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
                for d in value.type.tensor_type.shape.dim]

    return dims(inp), dims(out)


def _opt_hw(inp: dict) -> tuple[int, int]:
    shape = inp["profile"]["opt"] if inp.get("profile") else inp["shape"]
    return int(shape[2]), int(shape[3])


def _profile(inp: dict, max_batch: int) -> dict:
    """The TensorRT optimisation profile (full NCHW shapes): the bundle's H x W range, batch 1 to ``max_batch``."""
    prof = inp.get("profile") or {k: inp["shape"] for k in ("min", "opt", "max")}
    return {"min": [1, *prof["min"][1:]], "opt": [max_batch, *prof["opt"][1:]], "max": [max_batch, *prof["max"][1:]]}


def model_config(model: TritonModel):
    """The model's configuration as Triton's ``inference.ModelConfig`` protobuf (from tritonclient)."""
    mc = require("tritonclient.grpc.model_config_pb2", "triton", "tritonclient")
    config = mc.ModelConfig(name=model.name, platform=model.platform, max_batch_size=model.max_batch_size)
    config.input.add(name=model.input_name, data_type=mc.TYPE_FP32, dims=model.input_dims)
    config.output.add(name=model.output_name, data_type=mc.DataType.Value(model.output_type), dims=model.output_dims)
    if model.max_batch_size:
        config.dynamic_batching.max_queue_delay_microseconds = model.queue_delay_us
    if model.platform == "tensorrt_plan":
        # the engine's first (and only) optimisation profile, on every GPU instance
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=1, profile=["0"])
    else:
        # On a GPU, ONNX Runtime hands the graph to TensorRT with this profile; on a CPU-only server it is ignored.
        accel = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        accel.parameters["precision_mode"] = "FP16"
        for key in ("min", "opt", "max"):
            accel.parameters[f"trt_profile_{key}_shapes"] = (
                f"{model.input_name}:" + "x".join(str(d) for d in model.profile[key]))
        accel.parameters["trt_engine_cache_enable"] = "1"
    return config


def config_text(model: TritonModel) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(model_config(model))


def _swap_in(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, replacing an existing ``target`` only once the new one is complete."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
