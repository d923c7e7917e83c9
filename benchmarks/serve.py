"""Throughput of ``rtseg serve``: 1, 2 and 4 concurrent streams through the service against one local Segmenter.

The service runs on a local Ray cluster (``--replicas`` replicas, one core each); each stream is a thread sending
its frames one after another through a RemoteSegmenter (raw pixels in, raw labels out, HTTP keep-alive), so a
stream never has more than one frame in flight and frames of different streams meet in the replicas' batches.
The baseline is one local Segmenter (ONNX Runtime on every core) segmenting the same frames in one thread.
Every remote label map is checked against the local one. Ratios come from one run; the machine stamp (with the
load average, since the figures mean little on a busy machine) is written with them:

    python benchmarks/serve.py               # prints a table, writes benchmarks/results/serve-<host>.json
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_stamp, save_results  # noqa: E402

from rtseg.sizes import read_size  # noqa: E402


def make_bundle(out: Path, size: str) -> Path:
    from rtseg.cli import main

    if main(["export", "--model", "fast_scnn", "--num-classes", "19", "--input-size", size, "--out", str(out)]):
        raise SystemExit("export failed")
    return out


def frames_for(streams: int, count: int, hw: tuple[int, int]) -> list[np.ndarray]:
    from rtseg.scenes import synthetic_scenes

    return [np.ascontiguousarray(synthetic_scenes(count, *hw, seed=s)[..., ::-1]) for s in range(streams)]


def bench_local(bundle: Path, frames: np.ndarray, threads: int | None = None) -> tuple[dict, list[np.ndarray]]:
    from rtseg.runtime import load

    with load(bundle, threads=threads) as seg:
        seg.segment(frames[0])  # warm-up
        lat, labels = [], []
        t0 = time.perf_counter()
        for f in frames:
            t = time.perf_counter()
            labels.append(seg.segment(f).labels)
            lat.append(time.perf_counter() - t)
        wall = time.perf_counter() - t0
    return {"frames": len(frames), "fps": len(frames) / wall, **percentiles(lat)}, labels


def bench_remote(url: str, streams: list[np.ndarray], expected: list[list[np.ndarray]]) -> dict:
    from rtseg.serve.client import RemoteSegmenter

    remote = RemoteSegmenter(url)
    remote.segment(streams[0][0])  # warm-up (connection, replica)
    remote.batch_sizes.clear()
    lat: list[float] = []
    wrong = [0]

    def run(k):
        for i, f in enumerate(streams[k]):
            t = time.perf_counter()
            labels = remote.segment(f).labels
            lat.append(time.perf_counter() - t)
            wrong[0] += not np.array_equal(labels, expected[k][i])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(streams))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    n = sum(len(s) for s in streams)
    return {"streams": len(streams), "frames": n, "fps": n / wall, **percentiles(lat),
            "batch_sizes": {str(k): v for k, v in sorted(remote.batch_sizes.items())},
            "mean_batch": sum(k * v for k, v in remote.batch_sizes.items()) / max(1, sum(remote.batch_sizes.values())),
            "labels_differing_from_local": wrong[0]}


def time_busy_port_refusal(bundle: Path) -> float:
    """Seconds ``rtseg serve`` takes to refuse a port in use (it should answer before starting any cluster)."""
    from rtseg.cli import main as rtseg_main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        t0 = time.perf_counter()
        code = rtseg_main(["serve", str(bundle), "--port", str(busy.getsockname()[1])])
        took = time.perf_counter() - t0
    if code != 2:
        raise SystemExit(f"rtseg serve on a busy port exited {code}, expected 2")
    return took


def percentiles(lat: list[float]) -> dict:
    q = statistics.quantiles(lat, n=100)
    return {"latency_ms_p50": 1000 * q[49], "latency_ms_p90": 1000 * q[89]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="a bundle (default: export fast_scnn at --input-size)")
    parser.add_argument("--input-size", default="256x512")
    parser.add_argument("--frame", default="360x640", help="HxW of the frames sent")
    parser.add_argument("--frames", type=int, default=60, help="frames per stream")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/serve-<host>.json)")
    args = parser.parse_args(argv)

    from rtseg.serve.app import ServeOptions, start

    stamp = machine_stamp()
    hw = read_size(args.frame, "--frame")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or make_bundle(Path(tmp) / "fast_scnn", args.input_size)
        streams = frames_for(4, args.frames, hw)
        expected = [bench_local(bundle, s)[1] for s in streams]
        # The baseline is timed right before and right after the service's runs (the machine's load drifts).
        local_before = bench_local(bundle, streams[0])[0]
        local_1core = bench_local(bundle, streams[0], threads=1)[0]
        refused_s = time_busy_port_refusal(bundle)  # tests/serve asserts the one line; how fast it comes is here
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        t0 = time.perf_counter()
        service = start(ServeOptions(bundle=bundle, replicas=args.replicas, cpus_per_replica=1,
                                     max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms, port=port,
                                     ray_init={"object_store_memory": 300 * 1024 * 1024}))
        startup = time.perf_counter() - t0
        try:
            remote = [bench_remote(service.url, streams[:n], expected[:n]) for n in (1, 2, 4)]
        finally:
            service.stop()
        local_after = bench_local(bundle, streams[0])[0]
    local = {"frames": local_before["frames"], "fps_before": local_before["fps"], "fps_after": local_after["fps"],
             "fps": (local_before["fps"] + local_after["fps"]) / 2,
             "latency_ms_p50": (local_before["latency_ms_p50"] + local_after["latency_ms_p50"]) / 2,
             "latency_ms_p90": (local_before["latency_ms_p90"] + local_after["latency_ms_p90"]) / 2}
    stamp["load_average_after"] = list(os.getloadavg())  # the stamp's load_average is the one before
    results = {"machine": stamp, "bundle_input": args.input_size, "frame": list(hw), "replicas": args.replicas,
               "max_batch": args.max_batch, "batch_wait_ms": args.batch_wait_ms, "service_startup_s": startup,
               "busy_port_refused_s": refused_s,
               "local": local, "local_one_thread": local_1core, "service": remote}

    print(f"{stamp['cpu']}, {stamp['cores_usable']} cores, load {stamp['load_average'][0]:.1f};"
          f" fast_scnn {args.input_size}, frames {args.frame}; service start {startup:.1f} s; a busy port refused in"
          f" {refused_s:.1f} s")
    print(f"{'':>24} {'frames/s':>9} {'vs local':>9} {'p50 ms':>8} {'p90 ms':>8} {'mean batch':>10}")
    print(f"{'local Segmenter':>24} {local['fps']:9.1f} {1.0:9.2f} {local['latency_ms_p50']:8.1f}"
          f" {local['latency_ms_p90']:8.1f} {'-':>10}   (before {local['fps_before']:.1f}, after"
          f" {local['fps_after']:.1f})")
    print(f"{'local, 1 thread':>24} {local_1core['fps']:9.1f} {local_1core['fps'] / local['fps']:9.2f}"
          f" {local_1core['latency_ms_p50']:8.1f} {local_1core['latency_ms_p90']:8.1f} {'-':>10}")
    for r in remote:
        print(f"{'service, ' + str(r['streams']) + ' stream(s)':>24} {r['fps']:9.1f} {r['fps'] / local['fps']:9.2f}"
              f" {r['latency_ms_p50']:8.1f} {r['latency_ms_p90']:8.1f} {r['mean_batch']:10.2f}")
        if r["labels_differing_from_local"]:
            print(f"  {r['labels_differing_from_local']} label maps differ from the local Segmenter's!")
    save_results("serve", results, stamp["host"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
