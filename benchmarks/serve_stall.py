"""``rtseg serve`` under clients that stall (issue #20, case 8 and its acceptance line).

A stalling client opens a connection, sends the headers of ``POST /segment`` with ``Content-Length: 1000000`` and
then 10 bytes of the body, and stops sending; when the server answers or hangs up (its body deadline) it connects
and stalls again at once, so for the whole loaded phase ``--stallers`` uploads are open. Beside them ``--clients``
normal clients each POST frames one after another (raw BGR pixels in, raw labels out, one keep-alive connection
each), and a prober sends ``GET /health`` every 0.5 s (10 s timeout: a probe that waits longer is a failure).

Two phases against one service, started as users start it (``python -m rtseg serve BUNDLE``, its own process):
unloaded (the normal clients and the prober alone, ``--unloaded-s``) then loaded (the same plus the stallers,
``--loaded-s``, 60 s by default). Figures: the normal clients' p50/p99 latency and failures in each phase, every
/health probe's latency and failures, what the stalled uploads got back and after how long. The goal (issue #20):
loaded p99 within 3x of unloaded, and no /health probe failing. Written with the machine stamp and the load average
(a busy machine makes every figure worse) to benchmarks/results/serve-stall-<host>.json:

    python3 benchmarks/serve_stall.py [--replicas 2] [--clients 8] [--stallers 8] [--loaded-s 60]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, busy_cpu_seconds, machine_stamp, save_results  # noqa: E402

from rtseg.sizes import read_size  # noqa: E402

STALL_LENGTH, STALL_SENT = 1_000_000, 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_bundle(out: Path, size: str) -> Path:
    from rtseg.cli import main

    if main(["export", "--model", "fast_scnn", "--num-classes", "19", "--input-size", size, "--out", str(out)]):
        raise SystemExit("export failed")
    return out


def start_service(bundle: Path, port: int, replicas: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rtseg", "serve", str(bundle), "--port", str(port), "--replicas", str(replicas),
           *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"rtseg serve exited {proc.returncode}: {proc.stderr.read()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(1)
    proc.kill()
    raise SystemExit("rtseg serve did not answer /health within 240 s")


def stop_service(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


class Phase:
    """One phase's normal clients, prober and stallers, all threads, until ``stop`` is set."""

    def __init__(self, port: int, frames: list[np.ndarray]):
        self.port, self.frames = port, frames
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.failures: Counter = Counter()
        self.health: list[float] = []
        self.health_failures: Counter = Counter()
        self.stall_answers: Counter = Counter()
        self.stall_held: list[float] = []  # seconds each stalled upload stayed open before the server ended it
        self.stall_connections = 0

    def normal(self, k: int) -> None:
        frame = self.frames[k % len(self.frames)]
        body = np.ascontiguousarray(frame).tobytes()
        headers = {"X-Frame-Shape": ",".join(map(str, frame.shape)), "Content-Type": "application/octet-stream"}
        conn = None
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", "/segment?format=raw", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
                why = str(resp.status)
            except (OSError, http.client.HTTPException) as exc:
                conn, ok, why = None, False, type(exc).__name__
            took = time.perf_counter() - t
            with self.lock:
                if ok:
                    self.latencies.append(took)
                else:
                    self.failures[why] += 1

    def probe(self) -> None:
        while not self.stop.wait(0.5):
            t = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/health")
                resp = conn.getresponse()
                resp.read()
                conn.close()
                ok, why = resp.status == 200, str(resp.status)
            except (OSError, http.client.HTTPException) as exc:
                ok, why = False, type(exc).__name__
            with self.lock:
                if ok:
                    self.health.append(time.perf_counter() - t)
                else:
                    self.health_failures[why] += 1

    def staller(self) -> None:
        head = (f"POST /segment HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: image/png\r\n"
                f"Content-Length: {STALL_LENGTH}\r\n\r\n").encode() + b"\x89PNG\r\n\x1a\n\0\0"[:STALL_SENT]
        while not self.stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError as exc:
                with self.lock:
                    self.stall_answers[f"connect {type(exc).__name__}"] += 1
                time.sleep(0.1)
                continue
            with self.lock:
                self.stall_connections += 1
            t = time.perf_counter()
            try:
                s.sendall(head)
                s.settimeout(0.5)
                got = b""
                while not self.stop.is_set():  # stall: send nothing more, wait for an answer or a hang-up
                    try:
                        chunk = s.recv(4096)
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    got += chunk
                    if b"\r\n\r\n" in got:
                        break
                if self.stop.is_set():
                    break
                status = got.split(b" ", 2)[1].decode() if got.startswith(b"HTTP/") else "closed"
            except OSError as exc:
                status = type(exc).__name__
            finally:
                s.close()
            with self.lock:
                self.stall_answers[status] += 1
                self.stall_held.append(time.perf_counter() - t)

    def run(self, seconds: float, clients: int, stallers: int) -> dict:
        threads = [threading.Thread(target=self.staller, daemon=True) for _ in range(stallers)]
        for t in threads:
            t.start()
        time.sleep(1.0 if stallers else 0.0)  # the uploads are open before the first frame is timed
        threads += [threading.Thread(target=self.normal, args=(k,), daemon=True) for k in range(clients)]
        threads.append(threading.Thread(target=self.probe, daemon=True))
        for t in threads[stallers:]:
            t.start()
        load0, busy0 = os.getloadavg()[0], busy_cpu_seconds()
        time.sleep(seconds)
        busy1 = busy_cpu_seconds()
        self.stop.set()
        for t in threads:
            t.join(timeout=40)
        busy = (busy1 - busy0) / (seconds * (os.cpu_count() or 1)) if busy0 is not None and busy1 else None
        return self.summary(seconds, clients, stallers, load0, busy)

    def summary(self, seconds: float, clients: int, stallers: int, load0: float, busy: float | None) -> dict:
        lat = sorted(self.latencies)
        return {"seconds": seconds, "clients": clients, "stallers": stallers,
                "load_average_1min": [load0, os.getloadavg()[0]],
                "machine_cpu_busy_share": busy,  # every process's CPU, this benchmark's and the service's included
                "frames": len(lat), "frames_per_s": len(lat) / seconds, **pct("latency_ms", lat),
                "failures": dict(self.failures),
                "health": {"probes": len(self.health) + sum(self.health_failures.values()),
                           "failures": dict(self.health_failures), **pct("latency_ms", sorted(self.health))},
                "stalled_uploads": {"connections": self.stall_connections, "answers": dict(self.stall_answers),
                                    **pct("held_s", sorted(self.stall_held), scale=1.0)}}


def pct(name: str, values: list[float], scale: float = 1000.0) -> dict:
    if len(values) < 2:
        return {f"{name}_p50": values[0] * scale if values else None, f"{name}_p99": None, f"{name}_max": None}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {f"{name}_p50": scale * q[49], f"{name}_p99": scale * q[98], f"{name}_max": scale * max(values)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="a bundle (default: export fast_scnn at --input-size)")
    parser.add_argument("--input-size", default="256x512")
    parser.add_argument("--frame", default="360x640", help="HxW of the normal clients' frames (raw BGR)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--stallers", type=int, default=8)
    parser.add_argument("--unloaded-s", type=float, default=30.0)
    parser.add_argument("--loaded-s", type=float, default=60.0)
    parser.add_argument("--serve-args", default="", help="more rtseg serve flags, e.g. '--max-batch 4'")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/serve-stall-<host>.json)")
    args = parser.parse_args(argv)

    from rtseg.scenes import synthetic_scenes

    stamp = machine_stamp()
    hw = read_size(args.frame, "--frame")
    frames = [np.ascontiguousarray(f[..., ::-1]) for f in synthetic_scenes(8, *hw, seed=3)]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or make_bundle(Path(tmp) / "fast_scnn", args.input_size)
        port = free_port()
        t0 = time.perf_counter()
        proc = start_service(bundle, port, args.replicas, args.serve_args.split())
        startup = time.perf_counter() - t0
        try:
            Phase(port, frames).run(5.0, args.clients, 0)  # warm-up: connections, replicas, batches
            unloaded = Phase(port, frames).run(args.unloaded_s, args.clients, 0)
            loaded = Phase(port, frames).run(args.loaded_s, args.clients, args.stallers)
        finally:
            exit_code = stop_service(proc)
    ratio = loaded["latency_ms_p99"] / unloaded["latency_ms_p99"]
    health_failures = sum(unloaded["health"]["failures"].values()) + sum(loaded["health"]["failures"].values())
    verdict = {"p99_ratio": ratio, "p99_within_3x": ratio <= 3.0, "health_failures": health_failures,
               "frame_failures": sum(loaded["failures"].values()),
               "passed": ratio <= 3.0 and health_failures == 0 and not loaded["failures"]}
    stamp["load_average_after"] = list(os.getloadavg())
    results = {"machine": stamp, "bundle_input": args.input_size, "frame": list(hw), "replicas": args.replicas,
               "serve_args": args.serve_args, "stall": {"content_length": STALL_LENGTH, "bytes_sent": STALL_SENT},
               "service_startup_s": startup, "service_exit_code": exit_code,
               "unloaded": unloaded, "loaded": loaded, "verdict": verdict}

    print(f"{stamp['cpu']}, {stamp['cores_usable']} cores, load {stamp['load_average'][0]:.1f}; fast_scnn"
          f" {args.input_size}, frames {args.frame} raw, {args.replicas} replica(s), {args.clients} clients")
    print(f"{'':>22} {'frames/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'fails':>6} {'/health p99 ms':>15}"
          f" {'max':>7} {'fails':>6}")
    for name, r in (("unloaded", unloaded), (f"{args.stallers} stallers", loaded)):
        h = r["health"]
        print(f"{name:>22} {r['frames_per_s']:9.1f} {r['latency_ms_p50']:8.1f} {r['latency_ms_p99']:8.1f}"
              f" {sum(r['failures'].values()):6d} {h['latency_ms_p99'] or 0:15.1f} {h['latency_ms_max'] or 0:7.1f}"
              f" {sum(h['failures'].values()):6d}")
    s = loaded["stalled_uploads"]
    print(f"stalled uploads: {s['connections']} opened, answers {json.dumps(s['answers'])}, held p50"
          f" {s['held_s_p50'] or 0:.1f} s; p99 ratio {ratio:.2f} (goal <= 3), /health failures {health_failures}:"
          f" {'PASS' if verdict['passed'] else 'FAIL'}")
    save_results("serve-stall", results, stamp["host"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
