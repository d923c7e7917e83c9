"""Class names and normalisation owned by the weights (issue #19, item 2) and ``--onnx --output`` (item 5).

The class set comes from the zoo entry (or a catalogue checkpoint, tests/models/test_catalogue.py), from
``--classes`` (a set, a names file or ``a,b,c``), else ``class_<i>`` with a note: never from the class count. The
manifest says where names and normalisation came from. A graph with several outputs needs ``--output``.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from rtseg import RtsegError
from rtseg.bundle import Manifest
from rtseg.bundle.classes import (
    CELEBAMASK,
    CITYSCAPES,
    VOC,
    class_table,
    classes_from_spec,
    resolve_classes,
)
from rtseg.cli import main
from rtseg.export.recipes import load_recipe
from rtseg.models import model_info

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--model", "fast_scnn", "--input-size", "64x128", "--precision", "fp32", "--calib-frames", "1"]


def _export(tmp_path, *argv, name="b"):
    out = tmp_path / name
    rc = main(["export", *argv, "--out", str(out)])
    return rc, out


def _manifest(out: Path) -> dict:
    return json.loads((out / "rtseg.json").read_text())


def _one_error(capsys, rc, match: str) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("rtseg: error:"), err
    assert match in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- where the names come from


def test_a_class_count_is_never_taken_for_a_dataset():
    for n in (19, 21):
        names, palette = class_table(n)
        assert names == [f"class_{i}" for i in range(n)] and len({tuple(c) for c in palette}) == n
    names, _, source, note = resolve_classes(19, None, None, "face.onnx (an --onnx graph)")
    assert names[0] == "class_0" and source == "class_<i> (none declared)"
    assert note.startswith("note: 19 classes named class_0..class_18: face.onnx (an --onnx graph) declares no")
    assert "--classes" in note and "\n" not in note


def test_every_zoo_entry_declares_its_class_set_and_recipes_keep_their_names():
    declared = {"bisenet": "cityscapes", "fast_scnn": "cityscapes", "icnet": "cityscapes", "fcn": "voc",
                "faceparsing": "celebamask"}
    for recipe in sorted((ROOT / "export").glob("*.toml")):
        model = load_recipe(recipe)
        info = model_info(model["model"])
        assert info.classes == declared[info.family], recipe.name
        names, palette, source, note = resolve_classes(model["num_classes"], model.get("classes"), info.classes,
                                                       f"zoo entry {info.name}")
        table = {"cityscapes": CITYSCAPES, "voc": VOC, "celebamask": CELEBAMASK}[info.classes]
        assert names == [n for n, _ in table] and palette == [list(c) for _, c in table], recipe.name
        assert note is None


def test_names_files_and_lists(tmp_path):
    good = tmp_path / "names.txt"
    good.write_text("sky\nsea\nsand\n\n")  # trailing blank lines are not classes
    assert classes_from_spec(str(good), 3)[0] == ["sky", "sea", "sand"]
    assert classes_from_spec("sky, sea,sand", 3)[0] == ["sky", "sea", "sand"]
    assert classes_from_spec("CelebAMask", 19)[0][17] == "hair"
    cases = {"dup.txt": ("sky\nsea\nsky\n", "'sky' appears twice (classes 0 and 2)"),
             "blank.txt": ("sky\n\nsea\n", "line 2 is blank"),
             "count.txt": ("sky\nsea\n", "names 2 classes but the model has 3")}
    for name, (text, match) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(RtsegError, match=re.escape(match)):
            classes_from_spec(str(tmp_path / name), 3)
    for spec, match in (("a,,b", "an empty name"), ("a,b", "names 2 classes"), ("voc", "has 21 classes, not 3"),
                        ("coco", "not a class set or a file")):
        with pytest.raises(RtsegError, match=re.escape(match)):
            classes_from_spec(spec, 3)


def test_zoo_entry_names_and_normalisation_and_their_sources(tmp_path, capsys):
    rc, out = _export(tmp_path, *FAST)
    assert rc == 0, capsys.readouterr().err
    m = _manifest(out)
    assert m["model"]["class_names"] == [n for n, _ in CITYSCAPES]
    assert m["model"]["class_source"] == "zoo entry fast_scnn"
    assert m["input"]["preprocessing_source"] == "zoo entry fast_scnn"
    # read back through the format layer; a manifest of an older rtseg (neither key) still loads and round-trips
    assert Manifest.from_dict(m).model.class_source == "zoo entry fast_scnn"
    old = json.loads(json.dumps(m))
    del old["model"]["class_source"], old["input"]["preprocessing_source"]
    again = Manifest.from_dict(old)
    assert again.model.class_source is None and again.preprocessing_source is None and again.to_dict() == old


def test_other_class_count_gets_generic_names_and_a_note(tmp_path, capsys):
    rc, out = _export(tmp_path, *FAST, "--num-classes", "5", "--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2")
    said = capsys.readouterr()
    assert rc == 0, said.err
    assert "note: 5 classes named class_0..class_4: zoo entry fast_scnn declares cityscapes (19 classes)" in said.out
    m = _manifest(out)
    assert m["model"]["class_names"] == [f"class_{i}" for i in range(5)]
    assert m["model"]["class_source"] == "class_<i> (none declared)"
    assert m["input"]["preprocessing_source"] == "--mean/--std" and m["input"]["mean"] == [0.5] * 3


def test_classes_file_and_partial_override_sources(tmp_path, capsys):
    names = tmp_path / "five.txt"
    names.write_text("".join(f"part{i}\n" for i in range(5)))
    rc, out = _export(tmp_path, *FAST, "--num-classes", "5", "--classes", str(names), "--channel-order", "BGR")
    assert rc == 0, capsys.readouterr().err
    m = _manifest(out)
    assert m["model"]["class_names"] == [f"part{i}" for i in range(5)] and m["model"]["class_source"] == "--classes"
    assert m["input"]["preprocessing_source"] == "--channel-order over zoo entry fast_scnn"
    assert f"--classes {names}" in m["build"]["command"]


@pytest.mark.parametrize("text, match", [("a\nb\na\na\nb\n", "'a' appears twice"), ("a\n\nb\nc\nd\ne\n", "blank"),
                                         ("a\nb\n", "names 2 classes but the model has 5")])
def test_bad_names_file_is_one_line_and_writes_nothing(tmp_path, capsys, text, match):
    names = tmp_path / "names.txt"
    names.write_text(text)
    rc, out = _export(tmp_path, *FAST, "--num-classes", "5", "--classes", str(names))
    _one_error(capsys, rc, match)
    assert not out.exists()


# ---------------------------------------------------------------- --onnx with several outputs


class ThreeHeads(nn.Module):
    """A main head at 1/2 and two auxiliary heads at 1/4, as a training graph exported whole has them."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU())
        self.main, self.aux1, self.aux2 = nn.Conv2d(8, classes, 1), nn.Conv2d(8, classes, 1), nn.Conv2d(8, classes, 1)

    def forward(self, x):
        f = self.stem(x)
        g = self.down(f)
        return self.main(f), self.aux1(g), self.aux2(g) * 2


@pytest.fixture(scope="module")
def three_outputs(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("graphs") / "three.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ThreeHeads().eval(), (torch.zeros(1, 3, 64, 64),), str(path), input_names=["image"],
                          output_names=["out", "aux16", "aux32"], opset_version=17, dynamo=False)
    return path


def test_several_outputs_without_output_lists_them(tmp_path, capsys, three_outputs):
    rc, out = _export(tmp_path, "--onnx", str(three_outputs), "--num-classes", "4")
    line = _one_error(capsys, rc, "three.onnx has 3 outputs: out (1, 4, 32, 32) float32, aux16 (1, 4, 16, 16)"
                                  " float32, aux32 (1, 4, 16, 16) float32; pick the main one with --output NAME")
    assert line and not out.exists()


def test_output_naming_no_output_is_one_line(tmp_path, capsys, three_outputs):
    rc, out = _export(tmp_path, "--onnx", str(three_outputs), "--num-classes", "4", "--output", "logits")
    _one_error(capsys, rc, "--output logits: three.onnx has no such output; its outputs: out (1, 4, 32, 32)")
    assert not out.exists()


def test_output_with_a_zoo_model_is_refused(tmp_path, capsys):
    rc, out = _export(tmp_path, *FAST, "--output", "logits")
    _one_error(capsys, rc, "--output picks an output of an --onnx graph")


def test_output_picks_the_main_head(tmp_path, capsys, three_outputs):
    rc, out = _export(tmp_path, "--onnx", str(three_outputs), "--num-classes", "4", "--output", "out",
                      "--classes", "skin,hair,eyes,rest")
    err = capsys.readouterr().err
    assert rc == 0, err
    m = _manifest(out)
    assert m["output"]["name"] == "out" and m["model"]["source"]["output"] == "out"
    assert m["model"]["class_names"] == ["skin", "hair", "eyes", "rest"] and m["model"]["class_source"] == "--classes"
    assert m["input"]["preprocessing_source"] == "ImageNet default (--onnx)"
    graph = onnx.load(str(out / "model.onnx"))
    assert [o.name for o in graph.graph.output] == ["out"]
    ops = {n.op_type for n in graph.graph.node}
    assert sum(n.op_type == "Conv" for n in graph.graph.node) == 2 and "Mul" not in ops  # aux convs, x2 gone
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    full = ort.InferenceSession(str(three_outputs), providers=["CPUExecutionProvider"]).run(["out"], {"image": x})
    kept = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    np.testing.assert_allclose(kept[0], full[0], rtol=0, atol=1e-5)
    # one output given by name, and the only one: nothing to prune, the same name accepted
    single = tmp_path / "single.onnx"
    onnx.save(graph, str(single))
    rc, out2 = _export(tmp_path, "--onnx", str(single), "--num-classes", "4", "--output", "out", name="b2")
    assert rc == 0 and "output" not in _manifest(out2)["model"]["source"]
