"""`rtseg models`: the zoo listing."""

from __future__ import annotations

import json

from rtseg.cli import main
from rtseg.models import create_model, list_models


def test_lists_every_model_with_its_facts(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(list_models())
    fast = rows["fast_scnn"]
    assert fast["params"] == sum(p.numel() for p in create_model("fast_scnn").parameters())
    assert fast["output_stride"] == 8 and "Tramac" in fast["checkpoint_layout"]


def test_table_without_building_models(capsys):
    assert main(["models", "--no-params"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["name", "family", "params"]
    assert {line.split()[0] for line in lines[1:]} == set(list_models())


def test_unknown_model_is_a_one_line_error(capsys):
    from rtseg import RtsegError
    from rtseg.models import model_info

    try:
        model_info("unet9000")
    except RtsegError as exc:
        assert "rtseg models" in str(exc)
    else:
        raise AssertionError("unknown model accepted")
