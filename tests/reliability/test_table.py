"""The table-driven suite (table.py; listed in docs/reliability.md): every case's exit code, one readable
``rtseg: error:`` line saying what to do, no traceback, and nothing written, half-written or changed in the files
around it (the bundle's verified-hash cache aside)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rtseg.bundle.format import VERIFIED_CACHE
from rtseg.cli import main

from .table import cases
from .world import build_world

pytest.importorskip("av", reason="PyAV is not installed (pip install 'rtseg[video]')")

CASES = cases()


@pytest.fixture(scope="module")
def world(small_bundle, tmp_path_factory) -> dict[str, str]:
    return build_world(tmp_path_factory.mktemp("world"), small_bundle)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            path = Path(dirpath) / name
            if name == VERIFIED_CACHE:
                continue
            st = path.lstat()  # a folder's own mtime moves with the cache file; its entries are compared instead
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns) if path.is_file() else (-1, 0)
    return out


def test_the_table_has_enough_cases():
    assert len(CASES) >= 150 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_case(world, case, capsys):
    _, argv, code, words = case
    root = Path(world["d"])
    before = _snapshot(root)
    got = main([a.format(**world) if "{" in a else a for a in argv])
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("rtseg: error:")]
    assert "Traceback" not in err + out, err
    assert got == code, (got, err)
    if words is None:
        assert not errors, err
    else:
        assert len(errors) == 1 and words.format(**world) in errors[0], err
        assert _snapshot(root) == before, "a failed command wrote or changed files"


def test_the_docs_list_every_case():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    missing = [c[0] for c in CASES if f"| `{c[0]}` |" not in doc]
    assert not missing, f"docs/reliability.md does not list {missing}"
