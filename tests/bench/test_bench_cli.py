"""``rtseg bench`` on the CPU: two backends, two sizes, three tiers and the naive row; bad input; Ctrl-C."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import pytest

from rtseg.cli import main

from ..conftest import REPO


@pytest.fixture(scope="module")
def bench_run(small_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out"
    code = main(["bench", str(small_bundle), "--backend", "onnxruntime,torch", "--device", "cpu", "--size", "64x128",
                 "--size", "96x192", "--frames", "8", "--warmup", "2", "--frame-size", "288x512", "--threads", "1", "--out", str(out)])
    return code, out


def test_writes_table_json_csv_and_plots(bench_run, capsys):
    code, out = bench_run
    assert code == 0
    doc = json.loads((out / "bench.json").read_text())
    rows = doc["rows"]
    configs = {(r["backend"], r["input"], r["tier"]) for r in rows}
    for backend in ("onnxruntime", "torch"):
        for size in ("64x128", "96x192"):
            assert {(backend, size, t) for t in "abc"} <= configs
    naive = [r for r in rows if r["tier"] == "naive"]
    assert {r["input"] for r in naive} == {"64x128", "96x192"}
    for r in rows:
        assert r["frames"] == 8 and len(r["samples_ms"]) == 8
        assert r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["min_ms"] <= r["mean_ms"] and r["throughput_fps"] > 0 and r["frame"] == "288x512"
        assert r["device"] == "cpu"
    assert {r["provider"] for r in rows if r["backend"] == "onnxruntime"} == {"CPUExecutionProvider"}
    c = [r for r in rows if r["tier"] == "c"]
    assert all({"decode", "preprocess", "infer", "postprocess", "overlay", "encode"} <= set(r["stages_ms"])
               for r in c)
    assert all(r["throughput_kind"] == "pipelined" for r in c)
    stamp = doc["machine"]
    assert stamp["cores"] >= 1 and stamp["cpu"] and stamp["versions"]["onnxruntime"] and stamp["versions"]["torch"]

    with open(out / "bench.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    for png in ("latency.png", "stages.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tiers_are_consistent(bench_run):
    """Each tier holds the one before it: (b) times (a)'s inference plus preprocess and postprocess, (c) adds
    decode, overlay and encode. Which tier is faster is a timing claim, checked by benchmarks/bench.py (tier_order),
    not here: shared cores make it flaky."""
    _, out = bench_run
    rows = json.loads((out / "bench.json").read_text())["rows"]
    by = {(r["backend"], r["input"], r["tier"]): r for r in rows}
    for backend in ("onnxruntime", "torch"):
        for size in ("64x128", "96x192"):
            a, b, c = (by[(backend, size, t)] for t in "abc")
            assert set(a["stages_ms"]) == {"infer"}
            assert set(b["stages_ms"]) == {"preprocess", "infer", "postprocess"}
            assert set(c["stages_ms"]) == set(b["stages_ms"]) | {"decode", "overlay", "encode"}
            for row in (a, b, c):
                assert all(v > 0 for v in row["stages_ms"].values()) and 0 < row["min_ms"] <= row["mean_ms"], row


@pytest.mark.parametrize("argv, needle", [
    (["--backend", "onnx"], "unknown backend 'onnx'"),
    (["--size", "64by128"], "expected HxW"),
    (["--size", "64x100"], "not a multiple of 32"),
    (["--device", "cuda"], "device cuda:0 was asked for"),
    (["--frames", "0"], "--max-frames (--frames) must be at least 1"),
    (["--source", "missing.mp4"], "does not exist"),
])
def test_bad_input_one_line(small_bundle, tmp_path, capsys, argv, needle):
    code = main(["bench", str(small_bundle), "--frames", "2", "--warmup", "0", "--tiers", "a", "--no-naive",
                 "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("rtseg: error:") and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "out" / "bench.json").exists()


def test_unloadable_bundle_and_unwritable_out(small_bundle, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["bench", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert main(["bench", str(small_bundle), "--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "is not an rtseg bundle" in err[0] and "cannot write to --out" in err[1]


def test_ctrl_c_prints_what_was_measured(small_bundle, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "rtseg", "bench", str(small_bundle), "--backend", "onnxruntime",
                             "--device", "cpu", "--frames", "100000", "--warmup", "1", "--frame-size", "64x96",
                             "--tiers", "a,b", "--no-naive", "--out", str(out)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # the row lines; interrupt a second into tier (a)
            if "a: model only" in line:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "interrupted; what was measured so far" in stderr
    assert "a: model only" in stdout and "b: model + transfers" not in stdout
    doc = json.loads((out / "bench.json").read_text())
    assert doc["interrupted"] is True and doc["rows"][0]["frames"] > 0
