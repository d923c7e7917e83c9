"""INT8 post-training quantization of the FP32 graph: ONNX Runtime's ``quantize_static``, QDQ format.

Two forms come from one code path (one calibration, cached as JSON, quantized twice):

* ``u8s8`` (artifact ``onnx_int8``): U8 activations, S8 weights, per-channel. On a CPU with AVX-512 VNNI, ONNX
  Runtime's graph optimiser folds every ``DequantizeLinear -> Conv -> QuantizeLinear`` of this form into one
  ``QLinearConv`` (checked after each build: :func:`fused_form`); with ``quantize_static``'s default S8S8 types a
  third of the convs stay ``DQ -> FP32 Conv -> Q`` with Transposes around them, about 2x slower.
* ``s8s8`` (artifact ``onnx_int8_s8s8``): symmetric S8 activations and weights, per-channel, the explicit-precision
  QDQ form TensorRT builds INT8 engines from (``--int8-tensorrt``). Slow on ONNX Runtime's CPU provider: it is not
  the CPU's graph.

Ranges are MinMax over the calibration frames, collected one frame at a time (``CalibStridedMinMax``), so memory
holds one frame's activations, not all of them. Nodes ONNX Runtime has no INT8 kernel for stay FP32 (reported by
:func:`fused_form`: e.g. Fast-SCNN's pooling module, ReduceMean/Resize, between Q/DQ pairs); nodes the user or the
fallback names (``--int8-keep-fp32``) are excluded from quantization. :func:`sensitivity` ranks the convs by how
much quantization error each adds (relative error at its output minus the one at its input, on one frame), the
order in which the automatic fallback returns layers to FP32.

Channel-attention gates stay FP32 in both forms (:func:`attention_gates`): the ``Conv -> Sigmoid`` on a globally
pooled (1x1) tensor that scales a feature map (BiSeNetV1's ARMs and FFM, SE blocks). Quantized, the conv's output
gets a Q/DQ pair before the Sigmoid, and OpenVINO then fuses dequantize + Sigmoid + requantize into the
``Mul``'s eltwise kernel, which broadcasts the 1x1 gate and so evaluates the Sigmoid once per element of the full
feature map (profiled: 7.5 ms of BiSeNetV1's 35 ms at 512x1024, against 0.7 ms for NNCF's graph, which leaves that
conv's output unquantized). Left FP32, the Sigmoid fuses into the conv and the Mul reads a quantized gate; the
convs are a few thousand MACs each, and ONNX Runtime is faster too (no QLinearSigmoid on a broadcast tensor).

The network input is quantized symmetrically in the U8S8 form too (U8, zero point 128), so that the OpenVINO runner
can read it as S8 with zero point 0, the same values exactly (rtseg/runtime/openvino.py): OpenVINO runs a first conv
on an input with a non-zero zero point with a compensation for its padding, 27-45% slower (profiled on BiSeNetV1's
two 3-channel stems at 512x1024; NNCF quantizes that input S8 symmetric). ONNX Runtime keeps the U8 input, since its
QLinearConv needs one type in and out (an S8 input left the stems FP32: 1.5x slower).
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import RtsegError

FORMS = ("u8s8", "s8s8")
#: compute op types that carry weights or arithmetic (Q/DQ, shape and data-movement ops are not counted)
_COMPUTE = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Mul", "Sub", "Div", "Relu", "Clip", "Sigmoid",
            "HardSigmoid", "Resize", "ReduceMean", "AveragePool", "MaxPool", "GlobalAveragePool", "Concat",
            "BatchNormalization", "Softmax", "ArgMax", "Pad"}


def _quantization():
    try:
        import onnxruntime.quantization as q
    except ModuleNotFoundError:
        raise RtsegError("--precision int8 needs onnxruntime; install it with: pip install 'rtseg[export]'") from None
    return q


_GATES = ("Sigmoid", "HardSigmoid")
_POOLS = ("ReduceMean", "GlobalAveragePool", "GlobalMaxPool", "ReduceMax")


def attention_gates(model) -> list[str]:
    """The ``Conv`` and ``Sigmoid``/``HardSigmoid`` node names of each channel-attention gate in ``model``: a
    Sigmoid fed by a Conv whose input comes, through Conv/Relu/Clip (and Q/DQ) nodes, from a global pool."""
    producer = {o: n for n in model.graph.node for o in n.output}
    names = []
    for node in model.graph.node:
        conv = producer.get(node.input[0]) if node.op_type in _GATES else None
        if conv is None or conv.op_type != "Conv":
            continue
        up = producer.get(conv.input[0])
        for _ in range(8):  # pool -> [Q, DQ] -> (Conv -> Relu ->) ... -> this Conv
            if up is None or up.op_type in _POOLS or up.op_type not in ("QuantizeLinear", "DequantizeLinear",
                                                                         "Conv", "Relu", "Clip"):
                break
            up = producer.get(up.input[0])
        if up is not None and up.op_type in _POOLS:
            names += [conv.name, node.name]
    return names


def _reader(frames: np.ndarray, input_name: str):
    """A calibration data reader over ``frames`` (N, 3, H, W) float32, one frame per batch, with the range
    protocol ``CalibStridedMinMax`` uses."""
    q = _quantization()

    class FrameReader(q.CalibrationDataReader):
        def __init__(self):
            self.set_range(0, len(frames))

        def __len__(self):
            return len(frames)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._next = iter(range(start_index, end_index))

        def get_next(self):
            i = next(self._next, None)
            return None if i is None else {input_name: np.ascontiguousarray(frames[i:i + 1], dtype=np.float32)}

    return FrameReader()


def quantize(src: Path, dst: Path, frames: np.ndarray | None, input_name: str, form: str, cache: Path,
             keep_fp32: list[str] = ()) -> dict:
    """Quantize ``src`` to ``dst`` in ``form``; ranges from ``cache`` where it exists, else measured on ``frames``
    (then written to ``cache`` for the next form or fallback round). Returns what was done."""
    if form not in FORMS:
        raise RtsegError(f"unknown INT8 form {form!r}; use one of {', '.join(FORMS)}")
    q = _quantization()
    import onnx

    names = {n.name for n in onnx.load(str(src), load_external_data=False).graph.node}
    unknown = [n for n in keep_fp32 if n not in names]
    if unknown:
        raise RtsegError(f"--int8-keep-fp32: no node named {', '.join(map(repr, unknown))} in {src.name}; the"
                         f" report's 'sensitivity' lists the graph's conv names")
    if not Path(cache).is_file() and (frames is None or len(frames) < 1):
        raise RtsegError("INT8 calibration needs at least one frame; pass --calib with more frames")
    gates = [n for n in attention_gates(onnx.load(str(src), load_external_data=False)) if n not in keep_fp32]
    symmetric = form == "s8s8"
    extra = {"CalibStridedMinMax": 1, "ActivationSymmetric": symmetric, "WeightSymmetric": True}
    if not symmetric:  # the network input U8 with zero point 128: OpenVINO reads it as S8 (see the docstring)
        extra["TensorQuantOverrides"] = {input_name: [{"symmetric": True}]}
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # quantize_static's "pre-process" hint goes to the root logger
    tmp = Path(tempfile.mkdtemp(prefix=".rtseg-int8-", dir=dst.parent))
    try:
        out = tmp / dst.name
        q.quantize_static(str(src), str(out), _reader(frames, input_name) if frames is not None else None,
                          quant_format=q.QuantFormat.QDQ, per_channel=True,
                          activation_type=q.QuantType.QInt8 if symmetric else q.QuantType.QUInt8,
                          weight_type=q.QuantType.QInt8, nodes_to_exclude=list(keep_fp32) + gates or None,
                          calibrate_method=q.CalibrationMethod.MinMax, extra_options=extra,
                          calibration_cache_path=str(cache))
        out.replace(dst)
    except RtsegError:
        raise
    except Exception as exc:  # noqa: BLE001 - quantize_static raises many types; one line for the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RtsegError(f"INT8 quantization of {src.name} failed: {first}") from None
    finally:
        root.setLevel(level)  # only for the call: the process's own warnings stay visible afterwards
        for p in tmp.glob("*"):
            p.unlink()
        tmp.rmdir()
    return {"form": form, "activations": "S8 symmetric" if symmetric else "U8 asymmetric (the input: zero point 128)",
            "weights": "S8 symmetric per-channel", "calibration": "MinMax", "keep_fp32": list(keep_fp32),
            "attention_fp32": gates}


def fused_form(path: Path) -> dict:
    """What ONNX Runtime's CPU provider runs of an INT8 graph after its optimisations: convs fused into
    QLinearConv, convs left in FP32, and the FP32 compute ops left (with their Q/DQ pairs)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="rtseg-int8-opt-") as tmp:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        try:
            ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise RtsegError(f"ONNX Runtime cannot load the INT8 graph {path.name}: {first}") from None
        ops = Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)
    gates = attention_gates(onnx.load(str(path), load_external_data=False))
    fp32 = {op: n for op, n in sorted(ops.items()) if op in _COMPUTE or op in ("FusedConv", "NhwcConv")}
    convs = sum(ops[k] for k in ("Conv", "FusedConv", "NhwcConv", "ConvTranspose"))
    return {"qlinearconv": ops["QLinearConv"], "fp32_conv": convs, "qdq_pairs": ops["DequantizeLinear"],
            "attention_fp32_conv": len(gates) // 2,
            "fp32_ops": fp32, "int8_ops": {op: n for op, n in sorted(ops.items()) if op.startswith("QLinear")}}


def _session(model_bytes: bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every tensor as the graph has it
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def _with_outputs(model, names: set[str]) -> bytes:
    import onnx

    have = {o.name for o in model.graph.output}
    for name in sorted(names - have):
        model.graph.output.append(onnx.ValueInfoProto(name=name))
    return model.SerializeToString()


def sensitivity(fp32: Path, int8: Path, frame: np.ndarray, input_name: str) -> list[dict]:
    """The quantized convs of ``int8`` ranked by the quantization error each adds on ``frame`` (1, 3, H, W):
    relative L2 error of its output against the FP32 graph's same tensor, minus the error already at its input."""
    import onnx

    qmodel = onnx.load(str(int8))
    producer = {o: n for n in qmodel.graph.node for o in n.output}

    def original(name: str) -> str:  # a DequantizeLinear output -> the FP32 tensor it stands for
        node = producer.get(name)
        while node is not None and node.op_type in ("DequantizeLinear", "QuantizeLinear"):
            name = node.input[0]
            node = producer.get(name)
        return name

    consumer = {i: n for n in qmodel.graph.node for i in n.input if n.op_type in ("QuantizeLinear",
                                                                                   "DequantizeLinear")}

    def dequantized(name: str) -> str:  # a conv output -> its Q -> DQ value (a removed Relu/Clip is in the Q)
        for _ in range(2):
            name = consumer[name].output[0] if name in consumer else name
        return name

    convs = [n for n in qmodel.graph.node if n.op_type == "Conv" and producer.get(n.input[1]) is not None]
    pairs = [(n.name, n.input[0], original(n.input[0]), n.output[0]) for n in convs]
    qnames = {t for _, qin, _, out in pairs for t in (qin, dequantized(out))}
    fnames = {t for _, _, fin, out in pairs for t in (fin, out)}
    fmodel = onnx.load(str(fp32))
    fnames &= {o for n in fmodel.graph.node for o in n.output} | {i.name for i in fmodel.graph.input}
    feed = {input_name: np.ascontiguousarray(frame, dtype=np.float32)}
    qsess, fsess = _session(_with_outputs(qmodel, qnames)), _session(_with_outputs(fmodel, fnames))
    qv = dict(zip([o.name for o in qsess.get_outputs()], qsess.run(None, feed)))
    del qsess
    fv = dict(zip([o.name for o in fsess.get_outputs()], fsess.run(None, feed)))
    del fsess

    def rel(a, b) -> float:
        if a is None or b is None or a.shape != b.shape:
            return 0.0
        return float(np.linalg.norm(a - b) / max(float(np.linalg.norm(b)), 1e-12))

    ranked = []
    for name, qin, fin, out in pairs:
        err = rel(qv.get(dequantized(out)), fv.get(out))
        added = err - rel(qv.get(qin), fv.get(fin))
        ranked.append({"node": name, "added_error": round(added, 6), "output_error": round(err, 6)})
    return sorted(ranked, key=lambda r: -r["added_error"])
