"""Where a run's outputs may go: the one output-path policy (outputs never overwrite an input or each other, a
non-empty mask folder only with --overwrite) and files opened for writing with a one-line error."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import RtsegError


def _check_folder(path: Path, flag: str) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise RtsegError(f"{flag} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise RtsegError(f"{flag} {path}: folder {parent} is not writable")


MASK_NAME = re.compile(r"^\d{6}\.png$")  # what MaskSink writes: <index:06d>.png (and colour/<index:06d>.png)
VIDEO_SUFFIXES = (".mp4",)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output_paths(inputs, save=None, save_masks=None, stats=None, overwrite: bool = False) -> None:
    """The output-path policy of ``rtseg run``, checked before anything slow starts: outputs never overwrite an
    input or each other; ``--save`` names an .mp4 file, not a folder; a ``--save-masks`` folder that already holds
    files is refused unless ``overwrite``, which clears its old masks first (stale masks would be scored with the
    new ones). Raises :class:`RtsegError` with one line saying what to pass instead."""
    outputs = [(flag, Path(p)) for flag, p in (("--save", save), ("--save-masks", save_masks), ("--stats", stats))
               if p is not None and str(p) != ""]
    for flag, out in outputs:
        for src in inputs:
            if src is not None and str(src) and not str(src).isdigit() and "://" not in str(src) \
                    and _same_file(out, Path(src)):
                raise RtsegError(f"{flag} {out} is the input {src}: it would be overwritten; write to another path")
    for i, (flag, out) in enumerate(outputs):
        for other_flag, other in outputs[i + 1:]:
            if _same_file(out, other):
                raise RtsegError(f"{flag} and {other_flag} both name {out}: one would overwrite the other; give"
                                 f" each its own path")
    if save is not None:
        path = Path(save)
        if path.is_dir():
            raise RtsegError(f"--save {path} is a folder; name the video file, e.g. --save {path / 'out.mp4'}")
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise RtsegError(f"--save {path}: rtseg writes H.264 MP4 videos; name the file with .mp4, e.g."
                             f" --save {path.with_suffix('.mp4')}")
    if stats is not None and Path(stats).is_dir():
        raise RtsegError(f"--stats {stats} is a folder; name the JSON-lines file, e.g. --stats"
                         f" {Path(stats) / 'stats.jsonl'}")
    if save_masks is not None:
        _check_mask_folder(Path(save_masks), overwrite)


def _check_mask_folder(folder: Path, overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise RtsegError(f"--save-masks {folder} is a file; name a folder for the mask PNGs")
    if not folder.is_dir():
        return
    colour = folder / "colour"
    entries = list(folder.iterdir())
    masks = [p for p in (*entries, *(colour.iterdir() if colour.is_dir() else [])) if p.is_file()
             and MASK_NAME.match(p.name)]
    if not entries:
        return
    if not overwrite:
        raise RtsegError(f"--save-masks {folder} is not empty ({len(masks)} mask(s) of another run would mix with"
                         f" this one's); pass --overwrite to clear its old masks first, or name an empty folder")
    for path in masks:
        try:
            path.unlink()
        except OSError as exc:
            raise RtsegError(f"--save-masks {folder}: cannot clear the old mask {path.name}"
                             f" ({exc.strerror})") from None


def open_for_writing(path, flag: str):
    """A text file for streamed records (JSON lines), written in place so it can be followed during the run, with
    a one-line error where it cannot be written: a write, flush or close that fails (a full disk) removes the
    file and raises :class:`RtsegError` once; later calls do nothing."""
    path = Path(path)
    _check_folder(path, flag)
    try:
        return _StreamedText(path, flag)
    except OSError as exc:
        raise RtsegError(f"{flag} {path}: cannot write ({exc.strerror})") from None


class _StreamedText:
    def __init__(self, path: Path, flag: str):
        self.path, self.flag = path, flag
        self.file = open(path, "w", encoding="utf-8")
        self.failed = False

    def _do(self, step) -> None:
        if self.failed:
            return
        try:
            step()
        except OSError as exc:
            self.failed = True
            try:
                self.file.close()
            except OSError:
                pass
            self.path.unlink(missing_ok=True)
            raise RtsegError(f"{self.flag} {self.path}: could not write ({exc.strerror or exc}); free some space or"
                             f" choose another path") from None

    def write(self, text: str) -> None:
        self._do(lambda: self.file.write(text))

    def flush(self) -> None:
        self._do(self.file.flush)

    def close(self) -> None:
        def finish():
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()

        if not self.file.closed:
            self._do(finish)
