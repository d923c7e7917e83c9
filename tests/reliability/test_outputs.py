"""Outputs of ``rtseg run`` under the mistakes and faults users meet (issue #20, cases 1, 3-5, 12, 13, 18): one line
``rtseg: error: ...``, exit 2, no traceback, nothing half-written (no .partial), no input or earlier output lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rtseg.cli import main

from ..video.media import make_video

pytest.importorskip("av", reason="PyAV is not installed (pip install 'rtseg[video]')")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "in.mp4", 12, (64, 96))


def _error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("rtseg: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)
    return lines[0]


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".partial" in p.name]


# case -> (argv after BUNDLE SOURCE, with {d} the test folder and {in} the input; the words the line must hold)
POLICY = {
    "save over the input": (["--save", "{in}"], "is the input"),
    "stats over the input": (["--stats", "{in}"], "is the input"),
    "stats and save the same file": (["--save", "{d}/o.mp4", "--stats", "{d}/o.mp4"], "both name"),
    "masks and stats the same path": (["--save-masks", "{d}/m", "--stats", "{d}/m"], "both name"),
    "save into a folder": (["--save", "{d}"], "is a folder"),
    "save without an extension, masks beside": (["--save", "{d}/out", "--save-masks", "{d}/out"], "both name"),
    "save as avi": (["--save", "{d}/o.avi"], "name the file with .mp4"),
    "save as xyz": (["--save", "{d}/o.xyz"], "name the file with .mp4"),
    "save without an extension": (["--save", "{d}/o"], "name the file with .mp4"),
    "stats into a folder": (["--stats", "{d}"], "is a folder"),
    "masks into a file": (["--save-masks", "{in}"], "is the input"),
}


@pytest.mark.parametrize("case", POLICY)
def test_outputs_never_overwrite_inputs_or_each_other(fast_scnn_bundle, clip, tmp_path, capsys, case):
    argv, words = POLICY[case]
    source = tmp_path / "in.mp4"
    shutil.copy(clip, source)
    before = source.read_bytes()
    argv = [a.replace("{d}", str(tmp_path)).replace("{in}", str(source)) for a in argv]
    line = _error(capsys, ["run", str(fast_scnn_bundle), str(source), "--quiet", *argv])
    assert words in line, line
    assert source.read_bytes() == before  # the input untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]  # nothing written, nothing half-written


def test_a_masks_folder_with_old_masks_is_refused_unless_overwrite(fast_scnn_bundle, clip, tmp_path, capsys):
    masks = tmp_path / "masks"
    (masks / "colour").mkdir(parents=True)
    for i in range(40):  # masks of an earlier, longer run
        (masks / f"{i:06d}.png").write_bytes(b"old")
        (masks / "colour" / f"{i:06d}.png").write_bytes(b"old")
    (masks / "notes.txt").write_text("mine")
    line = _error(capsys, ["run", str(fast_scnn_bundle), str(clip), "--quiet", "--save-masks", str(masks),
                           "--colour-masks"])
    assert "--overwrite" in line and "80 mask(s)" in line
    assert len(list(masks.glob("*.png"))) == 40  # untouched
    assert main(["run", str(fast_scnn_bundle), str(clip), "--quiet", "--save-masks", str(masks), "--colour-masks",
                 "--overwrite"]) == 0
    assert sorted(p.name for p in masks.glob("*.png")) == [f"{i:06d}.png" for i in range(12)]  # no stale mask
    assert sorted(p.name for p in (masks / "colour").glob("*.png")) == [f"{i:06d}.png" for i in range(12)]
    assert (masks / "notes.txt").read_text() == "mine"  # only masks are cleared
    assert all((masks / f"{i:06d}.png").read_bytes()[:4] == b"\x89PNG" for i in range(12))


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MB tmpfs (mounting needs root; skipped with the reason where it is not allowed)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip() or proc.returncode}); needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path, leave: int) -> None:
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_disk_full_while_writing_masks(fast_scnn_bundle, tmp_path, small_disk, capsys):
    video = make_video(tmp_path / "v.mp4", 120, (120, 160))
    _fill(small_disk, 60_000)
    line = _error(capsys, ["run", str(fast_scnn_bundle), str(video), "--quiet", "--save-masks",
                           str(small_disk / "masks"), "--colour-masks"])
    assert "could not write" in line and "space" in line, line
    masks = small_disk / "masks"
    assert not _partials(small_disk)
    assert all(p.stat().st_size > 0 for p in masks.rglob("*.png"))  # never a 0-byte mask


def test_disk_full_while_saving_the_video(fast_scnn_bundle, tmp_path, small_disk, capsys):
    video = make_video(tmp_path / "v.mp4", 120, (120, 160))
    _fill(small_disk, 20_000)
    line = _error(capsys, ["run", str(fast_scnn_bundle), str(video), "--quiet", "--save", str(small_disk / "o.mp4")])
    assert "could not write" in line and "o.mp4" in line, line
    assert not _partials(small_disk) and not (small_disk / "o.mp4").exists()


def test_save_into_an_unwritable_place_names_the_path(fast_scnn_bundle, clip, capsys):
    line = _error(capsys, ["run", str(fast_scnn_bundle), str(clip), "--quiet", "--save", "/proc/o.mp4"])
    assert "/proc/o.mp4" in line


def test_model_edited_in_place_with_size_and_mtime_kept_is_refused(small_bundle, clip, tmp_path, capsys):
    """Case 5: the verified cache keys on size, mtime, ctime and inode: a same-size edit with the mtime put back
    is hashed again and refused."""
    bundle = tmp_path / "bundle"
    shutil.copytree(small_bundle, bundle)
    assert main(["run", str(bundle), str(clip), "--quiet", "--no-save", "--backend", "onnxruntime"]) == 0  # cached
    from rtseg.bundle.store import VERIFIED_CACHE

    assert "model.onnx" in json.loads((bundle / VERIFIED_CACHE).read_text())  # hashed once, now cached
    model = bundle / "model.onnx"
    st = model.stat()
    with open(model, "r+b") as f:  # one weight byte changed in place: same size, same inode
        f.seek(st.st_size // 2)
        byte = f.read(1)
        f.seek(st.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert model.stat().st_size == st.st_size and model.stat().st_mtime_ns == st.st_mtime_ns
    line = _error(capsys, ["run", str(bundle), str(clip), "--quiet", "--no-save", "--backend", "onnxruntime"])
    assert "model.onnx changed" in line and "rtseg export" in line
    assert np.any(np.frombuffer(model.read_bytes(), np.uint8) != np.frombuffer(
        (small_bundle / "model.onnx").read_bytes(), np.uint8))


def test_disk_full_while_writing_stats(fast_scnn_bundle, tmp_path, small_disk, capsys):
    video = make_video(tmp_path / "v.mp4", 120, (64, 96))
    _fill(small_disk, 4096)
    line = _error(capsys, ["run", str(fast_scnn_bundle), str(video), "--quiet", "--no-save", "--stats",
                           str(small_disk / "s.jsonl")])
    assert "--stats" in line and "could not write" in line, line
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no half-written stats
