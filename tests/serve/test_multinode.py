"""``rtseg serve --address`` on a real multi-node Ray cluster (issue #23, items 1 and 2).

``ray.cluster_utils.Cluster`` starts a head (no CPUs: it runs Serve's controller and proxy, no replica) and two
worker nodes with two CPUs each, every one its own raylet and object store; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
in the environment before Ray starts keeps the head, the nodes and the serve driver on 127.0.0.1, so no traffic goes
to the machine's network address. ``rtseg serve`` runs as its own process, as a user starts it; the bundle's folder
is deleted as soon as it serves. Four streams then run while one worker node is killed (its raylet and every worker
process on it, not a replica): each stream gets every frame once, in order, equal to a local Segmenter's; Serve
restarts the lost replica on the surviving node, which loads the bundle from Ray (its folder is gone).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray[serve] is not installed (pip install 'rtseg[serve]')")

from rtseg.runtime import load  # noqa: E402
from rtseg.scenes import synthetic_scenes  # noqa: E402
from rtseg.serve.client import RemoteSegmenter  # noqa: E402

pytestmark = pytest.mark.slow  # about two minutes: three raylets, a node's death detected by Ray's health checks
LOCAL = "127.0.0.1"
STREAMS, FRAMES, KILL_AT = 4, 60, 15
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    from ray._private import ray_constants

    store = 100 * 1024 * 1024
    with pytest.MonkeyPatch.context() as mp:
        # Every Ray process started from here reads the variable at its start; this process read it when it first
        # imported Ray (another test module may have), so its copy of the flag is set to what the variable says.
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": store,
                                                          "include_dashboard": False})
        workers = [c.add_node(num_cpus=2, object_store_memory=store) for _ in range(2)]
        c.wait_for_nodes()
        try:
            yield c, workers, free_port()  # Serve has one HTTP port per cluster: every service here uses it
        finally:
            c.shutdown()


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl-C for rtseg serve (it undeploys its application), a kill if it does not end in a minute."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"rtseg serve exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    proc.kill()
    pytest.fail(f"rtseg serve did not become healthy within {timeout} s: {proc.communicate()[1][-2000:]}")


def test_replicas_on_two_nodes_survive_a_node_loss(cluster, fast_scnn_bundle, tmp_path):
    c, workers, port = cluster
    assert {n.node_ip_address for n in [c.head_node, *workers]} == {LOCAL}, "a Ray node left 127.0.0.1"
    bundle = tmp_path / "bundle"
    shutil.copytree(fast_scnn_bundle, bundle)
    bundle_sha = hashlib.sha256((bundle / "rtseg.json").read_bytes()).hexdigest()
    proc = _serve([str(bundle), "--address", c.address, "--replicas", "2", "--cpus-per-replica", "1", "--port",
                   str(port), "--max-batch", "4"], tmp_path, wait=False)
    url = f"http://{LOCAL}:{port}"
    try:
        _wait_healthy(url, proc)
        shutil.rmtree(bundle)  # from now on the bundle exists only in Ray

        remote = RemoteSegmenter(url, retries=20, backoff=0.25, timeout=60)
        assert remote.info["bundle_sha256"] == bundle_sha
        frames = [np.ascontiguousarray(synthetic_scenes(FRAMES, 360, 640, seed=10 + k)[..., ::-1])
                  for k in range(STREAMS)]
        with load(fast_scnn_bundle, threads=1) as local:
            expected = [[local.segment(f).labels for f in stream] for stream in frames]

        worker_ids = {w.node_id: w for w in workers}
        before: dict[str, set] = {"replicas": set(), "nodes": set()}
        results: list[list] = [[] for _ in range(STREAMS)]
        errors: list = []
        reached = threading.Event()

        def stream(k: int) -> None:
            try:
                for i, frame in enumerate(frames[k]):
                    results[k].append(remote.segment(frame).labels)
                    if k == 0 and i + 1 == KILL_AT:
                        reached.set()
                        time.sleep(0.5)  # the other stream's request is in flight while the node goes
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                reached.set()

        threads = [threading.Thread(target=stream, args=(k,)) for k in range(STREAMS)]
        for t in threads:
            t.start()
        assert reached.wait(120)
        before["replicas"] = set(remote.replica_frames)
        before["nodes"] = set(remote.node_frames)
        assert before["nodes"] == set(worker_ids), (
            f"replicas should run on both worker nodes, answers came from {before['nodes']}")
        victim = workers[0]
        c.remove_node(victim, allow_graceful=False)  # the node's raylet and worker processes, not a replica
        for t in threads:
            t.join(300)
        assert not errors, errors
        # four streams on two replicas keep requests queued on the lost node: they failed there and were sent again
        assert remote.retried >= 1, "no request was in flight on the lost node; the kill came too late to test it"
        for k in range(STREAMS):
            assert len(results[k]) == FRAMES, f"stream {k} got {len(results[k])} answers for {FRAMES} frames"
            for i, (got, want) in enumerate(zip(results[k], expected[k])):
                assert np.array_equal(got, want), f"stream {k} frame {i} differs from the local Segmenter's"

        # Serve replaces the lost replica on the surviving node; it loads the bundle from Ray (the folder is gone).
        survivor = workers[1].node_id
        deadline = time.monotonic() + 180
        new = set()
        while time.monotonic() < deadline and not new:
            remote.segment(frames[0][0])
            new = {r for r in remote.replica_frames if r not in before["replicas"]}
            time.sleep(0.2)
        assert new, "no replacement replica answered within 180 s"
        nodes_now = set()
        for _ in range(40):
            with urllib.request.urlopen(url + "/info", timeout=30) as resp:
                info = json.loads(resp.read())
            assert info["bundle_sha256"] == bundle_sha
            nodes_now.add(info["node"])
        assert nodes_now == {survivor}, f"answers after the loss came from {nodes_now}, not only {survivor}"
        assert victim.node_id not in nodes_now
        remote.close()
    finally:
        _stop(proc)


def _export(out: Path, model: str, size: str) -> Path:
    from rtseg.cli import main

    assert main(["export", "--model", model, "--input-size", size, "--precision", "fp32", "--calib-frames", "1",
                 "--out", str(out)]) == 0
    return out


def _serve(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess | subprocess.Popen:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "rtseg", "serve", *args]
    if kw.pop("wait", True):
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)


def _get(url: str, token: str | None = None) -> bytes | int:
    """The body of a 200, else the HTTP status."""
    import urllib.error

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code


def test_update_rolls_over_to_a_changed_bundle_without_losing_a_request(cluster, fast_scnn_bundle, tmp_path):
    c, _, port = cluster
    while len(c.worker_nodes) < 2:  # two worker nodes again after the previous test's loss
        c.add_node(num_cpus=2, object_store_memory=100 * 1024 * 1024)
    c.wait_for_nodes()
    first = tmp_path / "first"
    shutil.copytree(fast_scnn_bundle, first)
    second = _export(tmp_path / "second", "fast_scnn", "96x192")  # the same model, another bundle
    other = _export(tmp_path / "other", "bisenetv2", "64x128")  # another model
    shas = {name: hashlib.sha256((b / "rtseg.json").read_bytes()).hexdigest()
            for name, b in (("first", first), ("second", second))}
    common = ["--address", c.address, "--replicas", "2", "--cpus-per-replica", "1", "--max-batch", "4"]
    token, rotated_token = "update-keeps-this-token", "the-rotated-token-42"
    proc = _serve([str(first), *common, "--port", str(port), "--token", token], tmp_path, wait=False)
    url = f"http://{LOCAL}:{port}"
    try:
        _wait_healthy(url, proc)
        (first / "model.onnx").write_bytes(b"changed on disk while serving")  # ignored: replicas hold the bytes
        frames = [np.ascontiguousarray(synthetic_scenes(40, 180, 320, seed=30 + k)[..., ::-1]) for k in range(2)]
        expected = {}
        for name, b in (("first", fast_scnn_bundle), ("second", second)):
            with load(b, threads=1) as seg:
                expected[name] = [[seg.segment(f).labels for f in stream] for stream in frames]
        remote = RemoteSegmenter(url, retries=20, backoff=0.25, timeout=60, token=token)
        assert remote.info["bundle_sha256"] == shas["first"]

        results: list[list] = [[] for _ in frames]
        errors: list = []
        stop = threading.Event()

        def stream(k: int) -> None:
            try:
                while not stop.is_set():  # the stream's frames over and over until the update is done
                    for frame in frames[k]:
                        results[k].append(remote.segment(frame).labels)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=stream, args=(k,)) for k in range(len(frames))]
        for t in threads:
            t.start()
        again = _serve([str(second), *common, "--port", str(port)], tmp_path)  # a second start: not an update
        refused = _serve([str(other), *common, "--update"], tmp_path)
        broken = tmp_path / "broken"
        shutil.copytree(second, broken)
        (broken / "model.onnx").write_bytes(b"not the verified graph")
        refused_broken = _serve([str(broken), *common, "--update"], tmp_path)
        done = _serve([str(second), *common, "--update"], tmp_path)
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join(300)
        assert not errors, errors

        for out, words in ((refused, ("fast_scnn", "bisenetv2", "--force")), (refused_broken, ("model.onnx",)),
                           (again, ("already runs", "--update"))):
            lines = out.stderr.strip().splitlines()
            assert out.returncode != 0 and len(lines) == 1 and lines[0].startswith("rtseg: error:"), out.stderr
            assert all(w in lines[0] for w in words), lines[0]
        assert done.returncode == 0 and "access policy kept" in done.stderr, done.stderr
        assert json.loads(_get(url + "/info", token))["bundle_sha256"] == shas["second"]
        assert _get(url + "/info") == 401  # the update kept the token the service was started with
        # naming a token on an update rotates it, even for the bundle already served
        rotated = _serve([str(second), *common, "--update", "--token", rotated_token], tmp_path)
        assert rotated.returncode == 0 and "token required" in rotated.stderr, rotated.stderr
        assert rotated_token not in rotated.stderr and _get(url + "/info", token) == 401
        assert json.loads(_get(url + "/info", rotated_token))["bundle_sha256"] == shas["second"]
        # Every request got one answer, from the old bundle or the new one; once the new one answered a stream, no
        # later answer of that stream came from the old one after the update finished.
        seen = {"first": 0, "second": 0}
        for k, answers in enumerate(results):
            for i, labels in enumerate(answers):
                j = i % len(frames[k])
                which = [n for n in ("first", "second") if np.array_equal(labels, expected[n][k][j])]
                assert which, f"stream {k} answer {i} is neither bundle's labels"
                seen[which[0]] += 1
            tail = answers[-len(frames[k]):]
            assert all(np.array_equal(a, expected["second"][k][(len(answers) - len(tail) + n) % len(frames[k])])
                       for n, a in enumerate(tail)), f"stream {k} still got the old bundle after the update"
        assert seen["first"] and seen["second"], seen
        remote.close()

        # A node lost in the middle of an update that needs both nodes' CPUs (2 replicas x 2): one line as soon as
        # the cluster cannot hold the new version, not a wait without end; the service answers meanwhile.
        bigger = ["--address", c.address, "--replicas", "2", "--cpus-per-replica", "2", "--max-batch", "4"]
        rolling = _serve([str(fast_scnn_bundle), *bigger, "--update"], tmp_path, wait=False)
        said = _first_line(rolling, 120)
        assert "rolling the service over" in said, said
        c.remove_node(next(iter(c.worker_nodes)), allow_graceful=False)
        lost_at = time.monotonic()
        try:
            _, err = rolling.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            rolling.kill()
            pytest.fail("--update still waited 180 s after a node it needed left")
        lines = err.strip().splitlines()
        assert rolling.returncode != 0 and len(lines) == 1 and lines[0].startswith("rtseg: error:"), err
        assert "lost capacity" in lines[0] and "need 4 CPU(s)" in lines[0] and "has 2" in lines[0], lines[0]
        print(f"update ended {time.monotonic() - lost_at:.0f} s after the node loss: {lines[0]}")
        deadline = time.monotonic() + 120
        while _get(url + "/health") != b'{"status":"ok"}' and time.monotonic() < deadline:
            time.sleep(1)
        assert _get(url + "/health") == b'{"status":"ok"}', "the service stopped answering after the failed update"
    finally:
        _stop(proc)


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first line a process writes to its stderr, or a failure if it writes none within ``timeout``."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stderr.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not got:
        proc.kill()
        pytest.fail(f"no line from {proc.args} within {timeout} s")
    return got[0]
