"""Per-convolution efficiency of a bundle's FP32 graph: ONNX Runtime against PyTorch, as a share of the FMA peak.

Why FCN-ResNet50 gains less from ONNX Runtime than the small families: its 512x1024 frame is 553 GFLOP of
convolutions, so both runtimes spend nearly all their time in conv kernels, and the ratio is the ratio of their
kernels' efficiency. This script runs every distinct Conv of the graph (with the ReLU or Add+ReLU that ONNX Runtime
fuses into it) alone, in ONNX Runtime (ORT_ENABLE_ALL: NCHWc kernels, and ORT_ENABLE_EXTENDED: im2col + SGEMM) and in
PyTorch (``F.conv2d``, the kernel eager mode calls), one thread each, and reports GFLOP/s against the peak of an
AVX2 FMA loop on this core. Time is process CPU time, so other jobs on the machine change the figures little.

    python benchmarks/conv_efficiency.py BUNDLE_DIR     # table on stdout, benchmarks/results/conv-efficiency-<host>.json
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_stamp, median_cpu_seconds, save_results  # noqa: E402

LEVELS = ("ORT_ENABLE_ALL", "ORT_ENABLE_EXTENDED")


def fma_peak_gflops() -> float:
    """One core's FP32 FMA throughput (AVX2, 12 independent chains), from a loop compiled on the fly with cc."""
    import subprocess
    import tempfile

    src = r"""
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
int main(void) {
  __m256 a[12], b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
  long n = 50000000L; struct timespec t0, t1;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
  for (long k = 0; k < n; k++)
    _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
  float s = 0, v[8]; for (int i = 0; i < 12; i++) { _mm256_storeu_ps(v, a[i]); s += v[0]; }
  double dt = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  printf("%f %f\n", n * 12.0 * 16 / dt / 1e9, s);
  return 0;
}
"""
    with tempfile.TemporaryDirectory() as tmp:
        c, exe = Path(tmp) / "fma.c", Path(tmp) / "fma"
        c.write_text(src)
        subprocess.run(["cc", "-O2", "-mavx2", "-mfma", str(c), "-o", str(exe)], check=True)
        return max(float(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()[0])
                   for _ in range(3))


def distinct_convs(graph, shapes, inits):
    """[conv node, count, the op that follows it] for each distinct Conv (shapes, attributes, fusion) of a graph."""
    from onnx import helper

    consumers = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node.op_type)
    seen = {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        after = (consumers[node.output[0]] or [None])[0]
        attrs = sorted((a.name, str(helper.get_attribute_value(a))) for a in node.attribute)
        key = (str(shapes[node.input[0]]), inits[node.input[1]].shape, str(attrs), after)
        seen.setdefault(key, [node, 0, after])[1] += 1
    return list(seen.values())


def conv_case(node, after, shapes, inits):
    """A one-conv ONNX model (with its fused ReLU or Add+ReLU), its feeds, its MACs and a PyTorch twin."""
    import torch
    import torch.nn.functional as F
    from onnx import TensorProto, helper, numpy_helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    xs, w = shapes[node.input[0]], inits[node.input[1]]
    b = inits[node.input[2]] if len(node.input) > 2 else np.zeros(w.shape[0], np.float32)
    ys = shapes[node.output[0]]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)]
    out = "c"
    if after == "Add":
        inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, ys))
        nodes += [helper.make_node("Add", ["c", "r"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
        out = "y"
    elif after == "Relu":
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
        out = "y"
    graph = helper.make_graph(nodes, "conv", inputs, [helper.make_tensor_value_info(out, TensorProto.FLOAT, ys)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.random(xs, dtype=np.float32)}
    if after == "Add":
        feeds["r"] = rng.random(ys, dtype=np.float32)
    t = {k: torch.from_numpy(v) for k, v in feeds.items()}
    tw, tb = torch.from_numpy(w.copy()), torch.from_numpy(b.copy())

    def torch_conv():
        with torch.inference_mode():
            y = F.conv2d(t["x"], tw, tb, attrs.get("strides", 1), attrs.get("pads", [0, 0])[:2],
                         attrs.get("dilations", 1))
            if after == "Add":
                y = y + t["r"]
            return torch.relu_(y) if after in ("Add", "Relu") else y

    macs = int(np.prod(ys[1:])) * int(np.prod(w.shape[1:]))
    return model, feeds, macs, torch_conv


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="a bundle folder (its model.onnx, static input size)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper, shape_inference

    torch.set_num_threads(1)
    model = shape_inference.infer_shapes(onnx.load(str(args.bundle / "model.onnx")))
    g = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*g.value_info, *g.input, *g.output]}
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    peak = fma_peak_gflops()
    rows = []
    for node, count, after in distinct_convs(g, shapes, inits):
        case, feeds, macs, torch_conv = conv_case(node, after, shapes, inits)
        row = {"conv": node.name, "count": count, "after": after, "gflop": 2e-9 * macs,
               "kernel": [int(k) for k in inits[node.input[1]].shape[2:]],
               "torch_s": median_cpu_seconds(torch_conv)}
        for level in LEVELS:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
            sess = ort.InferenceSession(case.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            row[f"{level}_s"] = median_cpu_seconds(lambda s=sess, f=feeds: s.run(None, f))
        rows.append(row)
        print(f"{node.name:56s} x{count} {row['gflop']:6.1f} GFLOP  GFLOP/s: ORT NCHWc"
              f" {row['gflop'] / row['ORT_ENABLE_ALL_s']:5.1f}, ORT GEMM {row['gflop'] / row['ORT_ENABLE_EXTENDED_s']:5.1f},"
              f" torch {row['gflop'] / row['torch_s']:5.1f}", flush=True)
    print(f"\nFMA peak of one core: {peak:.1f} GFLOP/s")
    summary = {}
    for name, pick in (("1x1", lambda r: r["kernel"] == [1, 1]), ("kxk", lambda r: r["kernel"] != [1, 1]),
                       ("all", lambda r: True)):
        sel = [r for r in rows if pick(r)]
        flop = sum(r["gflop"] * r["count"] for r in sel)
        summary[name] = {"gflop": flop, **{k: sum(r[k] * r["count"] for r in sel)
                                             for k in ("torch_s", *(f"{lv}_s" for lv in LEVELS))}}
        s = summary[name]
        print(f"{name:4s} convs {flop:6.0f} GFLOP: ORT NCHWc {s['ORT_ENABLE_ALL_s']:5.2f} s"
              f" ({flop / s['ORT_ENABLE_ALL_s'] / peak:4.0%} of peak), ORT GEMM {s['ORT_ENABLE_EXTENDED_s']:5.2f} s"
              f" ({flop / s['ORT_ENABLE_EXTENDED_s'] / peak:4.0%}), torch {s['torch_s']:5.2f} s"
              f" ({flop / s['torch_s'] / peak:4.0%})")
    stamp = machine_stamp()
    save_results("conv-efficiency", {"machine": stamp, "bundle_model": args.bundle.name,
                                     "fma_peak_gflops_per_core": peak, "threads": 1, "convs": rows,
                                     "summary": summary}, stamp["host"], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
