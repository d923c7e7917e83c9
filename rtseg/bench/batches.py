"""``rtseg bench --batch 1,2,4,8``: per-frame latency and throughput per batch size (``Segmenter.segment_batch``).

Each batch size N runs the same host frames as calls of N frames (one inference each where the bundle has a batch
axis, ``rtseg export --max-batch``), after warm-up calls; a call's wall time divided by N is the per-frame latency,
N frames over it the throughput. A bundle exported at batch 1 runs its N frames one call each, which the table says.
"""

from __future__ import annotations

import statistics
import time


def batch_rows(seg, name: str, backend: str, frames: list, sizes: list[int], count: int, warmup: int,
               progress=lambda n: None) -> list[dict]:
    """One row per batch size: per-frame latency (median and p90 of calls, ms), frames per second, this process's
    CPU time per frame (all its threads: what other processes' load does not inflate), the runner calls one batch
    took."""
    from ..runtime.batch import max_batch

    limit = max_batch(seg) if not seg.runner.on_gpu else 1
    rows = []
    for n in sizes:
        batch = [frames[i % len(frames)] for i in range(n)]
        calls = max(1, -(-count // n))  # at least ``count`` frames per size
        for _ in range(max(1, -(-warmup // n))):
            seg.segment_batch(batch)
        times = []
        cpu = time.process_time()
        for _ in range(calls):
            t = time.perf_counter()
            seg.segment_batch(batch)
            times.append(time.perf_counter() - t)
            progress(n)
        cpu = time.process_time() - cpu
        per_frame = sorted(s / n for s in times)
        rows.append({"bundle": name, "backend": backend, "batch": n,
                     "runner_calls": 1 if limit is None or n <= limit else -(-n // limit),
                     "ms_per_frame": statistics.median(per_frame) * 1e3,
                     "p90_ms_per_frame": per_frame[int(0.9 * (len(per_frame) - 1))] * 1e3,
                     "fps": n / statistics.median(times), "calls": calls,
                     "cpu_ms_per_frame": cpu / (calls * n) * 1e3})
    base = {(r["bundle"], r["backend"]): r["fps"] for r in rows if r["batch"] == sizes[0]}
    for r in rows:
        r["speedup"] = r["fps"] / base[(r["bundle"], r["backend"])]
    return rows


def batch_markdown(rows: list[dict]) -> str:
    lines = ["| bundle | backend | batch | runner calls | ms/frame (median) | p90 | frames/s | vs first | CPU ms/frame |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['bundle']} | {r['backend']} | {r['batch']} | {r['runner_calls']} |"
                     f" {r['ms_per_frame']:.2f} | {r['p90_ms_per_frame']:.2f} | {r['fps']:.1f} |"
                     f" {r['speedup']:.2f}x | {r['cpu_ms_per_frame']:.1f} |")
    return "\n".join(lines)
