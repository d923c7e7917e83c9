"""``rtseg serve`` on a real local Ray cluster (2 CPUs, one per replica): many streams batched, every label map
equal to a local Segmenter's, bad requests answered 4xx while the service keeps serving, a replica killed mid-run
costs no frame. One cluster for the module; Serve and Ray are shut down at the end. The service asks for a token
(given explicitly, so it does on the loopback too: rtseg.access): every client here sends it, and one test checks
what a client without it gets."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray[serve] is not installed (pip install 'rtseg[serve]')")

from rtseg.access import UNAUTHORIZED, resolve  # noqa: E402
from rtseg.errors import RtsegError  # noqa: E402
from rtseg.scenes import synthetic_scenes  # noqa: E402
from rtseg.runtime import load  # noqa: E402
from rtseg.serve.app import ServeOptions, start  # noqa: E402
from rtseg.serve.client import RemoteSegmenter  # noqa: E402

STREAMS, FRAMES = 4, 50
TOKEN = "test-token-for-the-module-service"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(fast_scnn_bundle):
    port = free_port()
    svc = start(ServeOptions(bundle=fast_scnn_bundle, replicas=2, cpus_per_replica=1, max_batch=8,
                             batch_wait_ms=10, port=port, num_cpus=2, max_frame=(720, 1280),
                             ray_init={"object_store_memory": 200 * 1024 * 1024},
                             access=resolve("127.0.0.1", port, token=TOKEN).access))
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def local(fast_scnn_bundle):
    with load(fast_scnn_bundle, threads=1) as seg:
        yield seg


@pytest.fixture(scope="module")
def streams():
    """Four streams of 50 street-like BGR frames, each stream at its own size (one larger than the graph)."""
    sizes = [(64, 128), (90, 160), (120, 200), (72, 300)]
    return [np.ascontiguousarray(synthetic_scenes(FRAMES, h, w, seed=s)[..., ::-1]) for s, (h, w) in enumerate(sizes)]


def _run_streams(remote, streams, during=None):
    """Each stream on its own thread, frames in order; returns per-stream label lists and the wall time."""
    results = [[] for _ in streams]
    errors = []
    latencies = []

    def run(k):
        try:
            for frame in streams[k]:
                t = time.perf_counter()
                results[k].append(remote.segment(frame).labels)
                latencies.append(time.perf_counter() - t)
        except Exception as exc:  # noqa: BLE001 - a loud failure is collected and asserted on
            errors.append((k, len(results[k]), exc))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(streams))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    if during:
        during(results)
    for t in threads:
        t.join()
    _run_streams.latencies = latencies
    return results, errors, time.perf_counter() - t0


def test_streams_are_batched_and_exact(service, local, streams, record_property):
    remote = RemoteSegmenter(service.url, token=TOKEN)
    assert remote.class_names == local.class_names and np.array_equal(remote.palette, local.palette)
    results, errors, wall = _run_streams(remote, streams)
    assert not errors, errors
    for k, frames in enumerate(streams):
        assert len(results[k]) == FRAMES
        for frame, labels in zip(frames, results[k]):
            assert labels.shape == frame.shape[:2] and labels.dtype == np.uint8
            assert np.array_equal(labels, local.segment(frame).labels)
    batched = sum(n for size, n in remote.batch_sizes.items() if size > 1)
    assert sum(remote.batch_sizes.values()) == STREAMS * FRAMES
    assert batched > 0, remote.batch_sizes  # frames from different streams shared an inference call
    record_property("frames_per_s", STREAMS * FRAMES / wall)
    record_property("latency_ms_p50", 1000 * float(np.median(_run_streams.latencies)))
    record_property("batch_sizes", json.dumps(remote.batch_sizes))
    # the Python handle reaches the same replicas
    frame = streams[1][3]
    assert np.array_equal(service.handle.segment.remote(frame).result(), local.segment(frame).labels)


def _post(url, body, headers=None, method="POST", auth=True):
    req = urllib.request.Request(url, data=body, headers={**(AUTH if auth else {}), **(headers or {})}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def test_http_routes_and_bad_requests(service, local, streams):
    import cv2

    url = service.url
    status, body, _ = _post(f"{url}/health", None, method="GET")
    assert status == 200 and json.loads(body)["status"] == "ok"
    frame = streams[2][0]
    png = cv2.imencode(".png", frame)[1].tobytes()
    # an encoded image in, a single-channel label PNG out
    status, body, headers = _post(f"{url}/segment", png, {"Content-Type": "image/png"})
    assert status == 200 and headers["Content-Type"] == "image/png" and int(headers["X-Batch-Size"]) >= 1
    assert np.array_equal(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED),
                          local.segment(frame).labels)
    # an overlay out, at the frame's size
    status, body, _ = _post(f"{url}/segment?out=overlay&format=png&alpha=0.4", png)
    assert status == 200
    assert np.array_equal(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR),
                          local.overlay(frame, local.segment(frame).labels, 0.4))

    bad = [(b"this is not an image", {}, 400, "not an image"),
           (b"", {}, 400, "no body"),
           (b"\0" * 10, {"X-Frame-Shape": "4,4,3"}, 400, "needs 48"),
           (b"\0" * 10, {"X-Frame-Shape": "4,4"}, 400, "expected H,W,3"),
           (b"\0" * 10, {"X-Frame-Shape": "2000,2000,3"}, 413, "--max-frame 720x1280"),
           (cv2.imencode(".png", np.zeros((800, 64, 3), np.uint8))[1].tobytes(), {}, 413, "800x64")]
    for payload, headers, code, message in bad:
        status, body, _ = _post(f"{url}/segment", payload, headers)
        assert status == code and message in body.decode() and body.decode().count("\n") == 1, (status, body)
    assert _post(f"{url}/segment?out=mask", png)[0] == 400
    assert _post(f"{url}/nothing", png)[0] == 404
    assert _post(f"{url}/segment", None, method="GET")[0] == 405
    # still serving; a frame larger than the graph's 64x128 input is scaled to it, labels at the frame's size
    big = np.ascontiguousarray(synthetic_scenes(1, 480, 640, seed=9)[0, ..., ::-1])
    remote = RemoteSegmenter(url, token=TOKEN)
    labels = remote.segment(big).labels
    assert labels.shape == (480, 640) and np.array_equal(labels, local.segment(big).labels)
    with pytest.raises(RtsegError, match="413"):
        remote.segment(np.zeros((721, 64, 3), np.uint8))


def test_every_route_but_health_asks_for_the_token(service, streams, tmp_path, monkeypatch, capsys):
    """Issue #20 item 23: a 401 with rtseg.access's line for every route without the right token; /health open to
    load balancers (naming nothing); the token as a header or ?token=; the replicas hold only its digest, and it
    is in none of Ray's logs; the client's 401 is one line."""
    import cv2

    from rtseg.access import TOKEN_ENV, digest
    from rtseg.cli import main

    url = service.url
    frame = streams[0][0]
    for path, method in (("/segment", "POST"), ("/info", "GET"), ("/nothing", "GET"), ("/segment", "GET")):
        for auth in ({}, {"Authorization": "Bearer wrong-token-1234"}, {"Authorization": f"Basic {TOKEN}"}):
            status, body, headers = _post(url + path, frame.tobytes() if method == "POST" else None,
                                          {"X-Frame-Shape": "64,128,3", **auth}, method=method, auth=False)
            assert status == 401 and body.decode() == UNAUTHORIZED + "\n", (path, auth, status, body)
            assert headers["WWW-Authenticate"] == "Bearer"
    status, body, _ = _post(f"{url}/health", None, method="GET", auth=False)
    assert status == 200 and json.loads(body) == {"status": "ok"}
    assert json.loads(_post(f"{url}/health", None, method="GET")[1])["model"] == "fast_scnn"
    status, body, _ = _post(f"{url}/info?token={TOKEN}", None, method="GET", auth=False)
    assert status == 200 and json.loads(body)["num_classes"] == 19
    # only the digest reached the replicas (init arguments show in Ray's state API), and no log names the token
    policy = service.handle.access_policy.remote().result()
    assert policy.token_sha256 == digest(TOKEN) and TOKEN not in repr(policy)
    from ray._private.worker import global_worker

    logs = Path(global_worker.node.get_logs_dir_path())
    leaked = [p for p in logs.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert not leaked, leaked
    # the client without the token, or with a wrong one: one line saying what to pass
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(RtsegError, match=r"asks for a token \(401\); pass --token TOKEN or set RTSEG_TOKEN"):
        RemoteSegmenter(url)
    with pytest.raises(RtsegError, match=r"refused the token given \(401\)"):
        RemoteSegmenter(url, token="wrong-token-1234")
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), frame)
    capsys.readouterr()
    assert main(["run", "--source", str(image), "--remote", url, "--no-save", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtseg: error: ") and err.count("\n") == 1 and "--token" in err, err


def test_health_and_frames_answer_while_uploads_stall(service, local, streams):
    """Issue #20 item 8 at the service's depth (timings: benchmarks/serve_stall.py): more uploads stall than the
    batches' slots (2 replicas x 2 x --max-batch 8), each after 10 bytes of a million; /health and a whole frame
    are answered while every one of them is still open. An upload without the token is refused at once, before
    its body is waited for."""
    port = int(service.url.rsplit(":", 1)[1])
    head = (f"POST /segment HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000000\r\n"
            f"\r\n").encode() + b"0123456789"
    stalled = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(40)]
    try:
        for s in stalled:
            s.sendall(head)
        time.sleep(1.0)  # let them reach the replicas (not an assertion: a short wait only weakens the test)
        remote = RemoteSegmenter(service.url, token=TOKEN, retries=0)
        assert remote.health()["status"] == "ok"
        frame = streams[3][7]
        assert np.array_equal(remote.segment(frame).labels, local.segment(frame).labels)
        for s in stalled:  # every stalled upload is still waiting (each gets its 408 at the body deadline)
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(1)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as anonymous:
            anonymous.sendall(head.replace(TOKEN.encode(), b"not-the-token-000"))
            assert anonymous.recv(4096).startswith(b"HTTP/1.1 401 ")
        remote.close()
    finally:
        for s in stalled:
            s.close()


def test_a_bundle_that_fails_in_the_replica_says_why(service, fast_scnn_bundle, tmp_path):
    """Issue #20 item 11: a bundle that passes the serve command's checks but that no replica can load (a graph
    that is not ONNX, its manifest hash rewritten to match) is refused with the replica's own reason, not only
    Serve's "Failed to update the deployments". Deployed as a second application on the module's cluster (no CPU
    asked: the two replicas hold both cores), the way start() and --update deploy."""
    import hashlib
    import shutil

    from ray import serve

    from rtseg.serve.app import application, deploy_failure
    from rtseg.serve.package import pack, publish, withdraw

    broken = tmp_path / "broken"
    shutil.copytree(fast_scnn_bundle, broken)
    garbage = b"not an onnx graph at all"
    manifest = json.loads((broken / "rtseg.json").read_text())
    for entry in manifest["artifacts"].values():
        if entry:
            (broken / entry["file"]).write_bytes(garbage)
            entry["sha256"] = hashlib.sha256(garbage).hexdigest()
    (broken / "rtseg.json").write_text(json.dumps(manifest))
    holder = publish(pack(broken))
    opts = ServeOptions(bundle=broken, replicas=1, cpus_per_replica=0, port=0)
    try:
        with pytest.raises(Exception) as failed:
            serve.run(application(opts, holder), name="broken", route_prefix="/broken")
        why = deploy_failure(serve, failed.value, app="broken")
    finally:
        serve.delete("broken")
        withdraw(only=holder)
    assert why.startswith("a replica failed to start: ONNX Runtime cannot load") and "model.onnx" in why, why
    assert "\n" not in why and "Failed to update" not in why
    assert RemoteSegmenter(service.url, token=TOKEN).health()["status"] == "ok"  # the service kept serving


def _masks(folder):
    import cv2

    return {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*.png"))}


def test_run_remote_gives_the_local_masks(service, fast_scnn_bundle, tmp_path, monkeypatch):
    """``rtseg run --remote``: the video pipeline with the segment stage on the service, one and two streams."""
    pytest.importorskip("av", reason="PyAV is not installed (pip install 'rtseg[video]')")
    from rtseg.cli import main

    from ..video.media import make_video

    video = make_video(tmp_path / "clip.mp4", 300, size=(64, 96))
    assert main(["run", "--source", str(video), "--remote", service.url, "--token", TOKEN, "--save-masks",
                 str(tmp_path / "remote"), "--quiet"]) == 0
    assert main(["run", str(fast_scnn_bundle), "--source", str(video), "--save-masks", str(tmp_path / "local"),
                 "--quiet"]) == 0
    remote, local = _masks(tmp_path / "remote"), _masks(tmp_path / "local")
    assert len(local) == 300 and list(remote) == list(local)
    assert all(np.array_equal(remote[name], local[name]) for name in local)
    # two streams into the service at once: each keeps its own masks, equal to its frames run locally
    other = make_video(tmp_path / "other.mp4", 40, size=(96, 64))
    monkeypatch.setenv("RTSEG_TOKEN", TOKEN)  # the token from the environment this time
    assert main(["run", "--source", str(other), "--source", str(video), "--remote", service.url, "--max-frames",
                 "40", "--save-masks", str(tmp_path / "multi"), "--quiet"]) == 0
    assert main(["run", str(fast_scnn_bundle), "--source", str(other), "--save-masks", str(tmp_path / "other"),
                 "--quiet"]) == 0
    for k, alone in enumerate([_masks(tmp_path / "other"), dict(list(local.items())[:40])]):
        multi = _masks(tmp_path / "multi" / str(k))
        assert list(multi) == list(alone) and len(multi) == 40
        assert all(np.array_equal(multi[name], alone[name]) for name in alone), k


def test_replica_killed_mid_run_loses_no_frame(service, local, streams, record_property):
    from ray import serve

    remote = RemoteSegmenter(service.url, retries=6, backoff=0.3, token=TOKEN)
    killed = []

    def kill_one_replica(results):
        while sum(len(r) for r in results) < STREAMS * FRAMES // 4:  # a quarter of the frames done
            time.sleep(0.01)
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["name"].startswith("SERVE_REPLICA")]
        assert len(names) == 2, names
        served = dict(remote.replica_frames)
        ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
        killed.append((names[0], sum(len(r) for r in results), served))

    results, errors, _ = _run_streams(remote, streams, during=kill_one_replica)
    assert killed
    name, done_at_kill, served = killed[0]
    replica_id = name.rsplit("#", 1)[-1]
    assert served.get(replica_id, 0) > 0, (name, served)  # the killed replica was one that was answering
    # no stream stopped with an error, none lost or repeated a frame: exactly 50 answers each, in order, each right
    assert not errors, errors
    for k, frames in enumerate(streams):
        assert len(results[k]) == FRAMES
        assert all(np.array_equal(lab, local.segment(f).labels) for f, lab in zip(frames, results[k])), k
    record_property("retried_requests", remote.retried)
    print(f"replica {replica_id} killed after {done_at_kill} frames; {remote.retried} requests sent again;"
          f" answers per replica {remote.replica_frames}")
    record_property("killed_after_frames", done_at_kill)
    # Serve replaces the replica
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["name"].startswith("SERVE_REPLICA")]
        status = serve.status().applications["rtseg"].deployments["rtseg"]
        if killed[0][0] not in names and len(names) == 2 and status.status == "HEALTHY":
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the killed replica was not replaced: {names}")
    assert remote.health() | {"replica": None} == {"status": "ok", "model": "fast_scnn", "http_status": 200,
                                                   "replica": None}
