"""Kernel timings: the fused upsample+argmax and preprocess against the chains they replace.

CPU section (always): 19 classes, 128x256 -> 1024x2048 (Cityscapes at output stride 8), on
  * realistic logits: smooth regions, as a network produces (random blobs upsampled from 8x16), and
  * white noise: every output pixel is near a class boundary, the fused kernel's worst case;
against PyTorch F.interpolate + argmax and OpenCV per-channel cv2.resize + np.argmax. Also preprocess of a
1080p BGR frame to 1024x2048 against cv2.resize + NumPy normalisation.
GPU section (with an NVIDIA GPU): the CUDA kernel against PyTorch CUDA interpolate + argmax, and against the
memory floor (bytes read + written over the measured device-to-device copy bandwidth).

Ratios come from one run on one machine; the machine stamp is written with them:
    python benchmarks/kernels.py            # prints a table, writes benchmarks/results/kernels-<host>.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_stamp, save_results, timeit  # noqa: E402

import rtseg.kernels as K  # noqa: E402
from rtseg.kernels import cpu as kcpu  # noqa: E402

CLASSES, LOW, HIGH = 19, (128, 256), (1024, 2048)


def gpu_timeit(fn, repeat: int, batch: int = 50, warmup: int = 5) -> dict:
    """Per-call GPU time: ``batch`` back-to-back launches between CUDA events, as a pipeline issues them.

    Synchronising after every call would time the host round trip, not the kernel; the events measure the
    stream, so launch overhead counts only where it keeps the GPU waiting.
    """
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(batch):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / batch / 1e3)
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times), "repeat": repeat,
            "calls_per_timing": batch}


def realistic_logits(seed: int = 0) -> np.ndarray:
    """Smooth class regions like a segmentation network's logits: blobs at 8x16, upsampled to 128x256."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    blobs = torch.randn(1, CLASSES, 8, 16, generator=g) * 4.0
    logits = F.interpolate(blobs, LOW, mode="bicubic", align_corners=False)  # (1, 19, 128, 256)
    logits += 0.05 * torch.randn(logits.shape, generator=g)  # a little texture, as real logits have
    return logits.numpy().astype(np.float32)


def noise_logits(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, CLASSES, *LOW)).astype(np.float32)


def bench_upsample_cpu(name: str, logits: np.ndarray, repeat: int) -> dict:
    import cv2
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(logits)
    hwc = [np.ascontiguousarray(logits[0, c]) for c in range(CLASSES)]

    def run_torch():
        return F.interpolate(x, HIGH, mode="bilinear", align_corners=False).argmax(1)

    def run_opencv():
        planes = [cv2.resize(p, HIGH[::-1], interpolation=cv2.INTER_LINEAR) for p in hwc]
        return np.argmax(np.stack(planes), 0)

    out = np.empty((1, *HIGH), np.uint8)

    def run_fused():
        return K.upsample_argmax(logits, HIGH, out=out)

    res = {
        "fused_cpu": timeit(run_fused, repeat),
        "torch_interpolate_argmax": timeit(run_torch, max(2, repeat // 3)),
        "opencv_resize_argmax": timeit(run_opencv, max(2, repeat // 3)),
    }
    ref = run_torch().numpy()
    fused = run_fused()
    labels = fused if isinstance(fused, np.ndarray) else out
    res["labels_differing_from_torch"] = int((labels != ref).sum())
    # how much of the image took the shortcut (all four source pixels agree)
    low_arg = logits.argmax(1)[0]
    agree = (low_arg[:-1, :-1] == low_arg[1:, :-1]) & (low_arg[:-1, :-1] == low_arg[:-1, 1:]) & (
        low_arg[:-1, :-1] == low_arg[1:, 1:])
    res["lowres_cells_uniform"] = float(agree.mean())
    f = res["fused_cpu"]["median_ms"]
    res["speedup_vs_torch"] = res["torch_interpolate_argmax"]["median_ms"] / f
    res["speedup_vs_opencv"] = res["opencv_resize_argmax"]["median_ms"] / f
    res["logits"] = name
    return res


def bench_preprocess_cpu(repeat: int) -> dict:
    import cv2

    frame = np.random.default_rng(2).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    mean, std = np.float32(K.IMAGENET_MEAN), np.float32(K.IMAGENET_STD)
    out = np.empty((1, 3, *HIGH), np.float32)

    def run_opencv():
        r = cv2.resize(frame, HIGH[::-1], interpolation=cv2.INTER_LINEAR)[..., ::-1]
        x = (r.astype(np.float32) / np.float32(255.0) - mean) / std
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def run_fused():
        return K.preprocess(frame, HIGH, out=out)

    res = {"fused_cpu": timeit(run_fused, repeat), "opencv_numpy": timeit(run_opencv, repeat)}
    run_fused()
    res["max_abs_diff"] = float(np.abs(out - run_opencv()).max())
    res["speedup_vs_opencv_numpy"] = res["opencv_numpy"]["median_ms"] / res["fused_cpu"]["median_ms"]
    res["frame"], res["size"] = [1080, 1920], list(HIGH)
    return res


def bench_gpu(repeat: int) -> dict | None:
    import torch
    import torch.nn.functional as F

    if not torch.cuda.is_available():
        return None
    from rtseg.kernels import cuda as kcuda

    if reason := kcuda.available():
        return {"skipped": reason}
    res = {}
    # copy bandwidth: one large device-to-device copy (read + write)
    buf = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(buf)
    copy = gpu_timeit(lambda: dst.copy_(buf), 5, batch=10)
    bandwidth = 2 * buf.numel() / (copy["min_ms"] / 1e3)  # bytes moved per second
    res["copy_bandwidth_GBps"] = bandwidth / 1e9
    for name, logits in (("realistic", realistic_logits()), ("noise", noise_logits())):
        for dtype in (torch.float32, torch.float16):
            x = torch.from_numpy(logits).to("cuda", dtype)
            out = torch.empty((1, *HIGH), dtype=torch.uint8, device="cuda")
            fused = gpu_timeit(lambda: K.upsample_argmax(x, HIGH, out=out), repeat)
            ref = gpu_timeit(lambda: F.interpolate(x, HIGH, mode="bilinear").argmax(1), repeat)
            floor_bytes = x.numel() * x.element_size() + out.numel()
            floor_ms = 1e3 * floor_bytes / bandwidth
            res[f"{name}_{str(dtype).removeprefix('torch.')}"] = {
                "fused_cuda": fused, "torch_cuda": ref, "speedup_vs_torch": ref["median_ms"] / fused["median_ms"],
                "memory_floor_ms": floor_ms, "fused_over_floor": fused["median_ms"] / floor_ms,
            }
    frame = torch.randint(0, 256, (1080, 1920, 3), dtype=torch.uint8, device="cuda")
    res["preprocess_cuda"] = gpu_timeit(lambda: K.preprocess(frame, HIGH), repeat)
    return res


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/kernels-<host>.json)")
    args = parser.parse_args(argv)

    import cv2  # noqa: F401 - loaded before the stamp, which records their thread counts
    import torch

    stamp = machine_stamp(cpu_extension=kcpu.extension() is not None)
    results = {"machine": stamp, "shape": {"classes": CLASSES, "low": list(LOW), "high": list(HIGH)}}
    results["upsample_argmax_cpu"] = [bench_upsample_cpu("realistic", realistic_logits(), args.repeat),
                                      bench_upsample_cpu("noise", noise_logits(), args.repeat)]
    results["preprocess_cpu"] = bench_preprocess_cpu(args.repeat)
    results["gpu"] = bench_gpu(args.repeat)

    v = stamp["versions"]
    print(f"machine: {stamp['cpu']}, {stamp['cores_usable']} cores; torch {v['torch']}, OpenCV {v['opencv']}")
    print(f"\nupsample+argmax, {CLASSES} classes, {LOW[0]}x{LOW[1]} -> {HIGH[0]}x{HIGH[1]} (median ms)")
    print(f"{'logits':<10} {'fused':>8} {'torch':>9} {'opencv':>9} {'x torch':>8} {'x opencv':>9} {'uniform':>8} {'diff':>5}")
    for r in results["upsample_argmax_cpu"]:
        print(f"{r['logits']:<10} {r['fused_cpu']['median_ms']:8.1f} {r['torch_interpolate_argmax']['median_ms']:9.1f} "
              f"{r['opencv_resize_argmax']['median_ms']:9.1f} {r['speedup_vs_torch']:8.1f} "
              f"{r['speedup_vs_opencv']:9.1f} {r['lowres_cells_uniform']:8.1%} {r['labels_differing_from_torch']:5d}")
    p = results["preprocess_cpu"]
    print(f"\npreprocess 1080x1920 BGR -> (1, 3, {HIGH[0]}, {HIGH[1]}) float32: fused {p['fused_cpu']['median_ms']:.1f} ms, "
          f"cv2.resize + NumPy {p['opencv_numpy']['median_ms']:.1f} ms ({p['speedup_vs_opencv_numpy']:.2f}x), "
          f"max |diff| {p['max_abs_diff']:.1e}")
    g = results["gpu"]
    if g is None:
        print("\nGPU section skipped: no CUDA device visible to PyTorch")
    elif "skipped" in g:
        print(f"\nGPU section skipped: {g['skipped']}")
    else:
        print(f"\nGPU ({torch.cuda.get_device_name()}), copy bandwidth {g['copy_bandwidth_GBps']:.0f} GB/s")
        for key, r in g.items():
            if isinstance(r, dict) and "fused_cuda" in r:
                print(f"{key:<18} fused {r['fused_cuda']['median_ms']:.3f} ms, torch {r['torch_cuda']['median_ms']:.3f} ms "
                      f"({r['speedup_vs_torch']:.1f}x), floor {r['memory_floor_ms']:.3f} ms ({r['fused_over_floor']:.1f}x floor)")
    save_results("kernels", results, stamp["host"], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
