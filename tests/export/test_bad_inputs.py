"""``rtseg export`` fed what users really feed it: each bad or unlucky input gets one ``rtseg: error:`` line.

For every case: the exit status, exactly one line on stderr (no traceback), no ``rtseg.json``, no temporary file, and
no output folder left behind by an error found before any artifact was written.
"""

from __future__ import annotations

import json
import warnings
import zipfile

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from rtseg.cli import main
from rtseg.models import create_model

# A real, complete fast_scnn checkpoint (untrained) is the starting point of the damaged ones.
_SIZE = ["--input-size", "64x128"]


def _torch_onnx(module, path, size=(64, 128)):
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, *size),), str(path), input_names=["image"],
                          output_names=["logits"], opset_version=17, dynamo=False)
    return path


def _nan_reference_onnx(path):
    """A graph whose output is NaN for any input: Sqrt of a negative number, as a log of a bad layer would be."""
    neg = helper.make_tensor("neg", TensorProto.FLOAT, [1], [-1.0])
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], name="head"),
             helper.make_node("Abs", ["c"], ["a"], name="abs"),
             helper.make_node("Mul", ["a", "neg"], ["m"], name="negate"),
             helper.make_node("Sqrt", ["m"], ["logits"], name="bad_sqrt")]
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 1, 1], [1, 0, 0, 0, 1, 0])
    graph = helper.make_graph(nodes, "nan", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                           [1, 3, 64, 128])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, 64, 128])],
                              [w, neg])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every kind of wrong file a user names as a checkpoint, a graph, calibration data or a recipe."""
    d = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    state = create_model("fast_scnn", num_classes=19).state_dict()
    good = d / "fast_scnn.pth"
    torch.save(state, good)
    f = {"good": good}
    f["empty"] = d / "empty.pth"
    f["empty"].write_bytes(b"")
    f["one_byte"] = d / "one_byte.pth"
    f["one_byte"].write_bytes(b"\x80")
    f["text"] = d / "notes.pth"
    f["text"].write_text("these are my training notes\nepoch 1 loss 0.3\n")
    f["html"] = d / "page.pth"
    f["html"].write_text("<!DOCTYPE html>\n<html><head><title>Google Drive - Virus scan warning</title></head></html>")
    f["lfs"] = d / "lfs.pth"
    f["lfs"].write_text("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2146\nsize 4839213\n")
    f["json"] = d / "config.pth"
    f["json"].write_text(json.dumps({"lr": 0.01, "epochs": 100}))
    f["npy"] = d / "weights.pth"
    with open(f["npy"], "wb") as fh:
        np.save(fh, np.zeros((3, 3), np.float32))
    f["npz"] = d / "weights_npz.pth"
    with open(f["npz"], "wb") as fh:
        np.savez(fh, a=np.zeros(3))
    f["truncated"] = d / "truncated.pth"
    f["truncated"].write_bytes(good.read_bytes()[:5000])
    f["other_zip"] = d / "archive.pth"
    with zipfile.ZipFile(f["other_zip"], "w") as z:
        z.writestr("readme.txt", "hello")
    f["module"] = d / "whole_model.pth"
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 1)), f["module"])
    f["torchscript"] = d / "scripted.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script's deprecation note: users still have such archives
        torch.jit.script(nn.Conv2d(3, 4, 1)).save(str(f["torchscript"]))
    f["caffemodel"] = d / "icnet.caffemodel"
    f["caffemodel"].write_bytes(b"\x0a\x05ICNet\x12\x04data")
    f["onnx_as_pth"] = d / "model.pth"
    f["nan"] = d / "nan.pth"
    poisoned = dict(state)
    poisoned["classifier.conv.1.weight"] = poisoned["classifier.conv.1.weight"].clone()
    poisoned["classifier.conv.1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(poisoned, f["nan"])
    f["inf"] = d / "inf.pth"
    poisoned["classifier.conv.1.weight"][0, 0, 0, 0] = float("inf")
    torch.save({"model_state": poisoned}, f["inf"])
    f["five_classes"] = d / "five.pth"
    torch.save(create_model("fast_scnn", num_classes=5).state_dict(), f["five_classes"])
    f["onnx"] = _torch_onnx(nn.Conv2d(3, 2, 1), d / "seg.onnx")
    f["onnx_as_pth"].write_bytes(f["onnx"].read_bytes())
    f["nan_onnx"] = _nan_reference_onnx(d / "nan.onnx")
    nan_init = onnx.load(str(f["onnx"]))
    arr = onnx.numpy_helper.to_array(nan_init.graph.initializer[0]).copy()
    arr.flat[0] = np.nan
    nan_init.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(arr, nan_init.graph.initializer[0].name))
    f["nan_init_onnx"] = d / "nan_init.onnx"
    onnx.save(nan_init, str(f["nan_init_onnx"]))
    f["empty_onnx"] = d / "empty.onnx"
    f["empty_onnx"].write_bytes(b"")
    f["html_onnx"] = d / "page.onnx"
    f["html_onnx"].write_bytes(f["html"].read_bytes())
    f["pth_as_onnx"] = d / "weights.onnx"
    f["pth_as_onnx"].write_bytes(good.read_bytes())
    f["empty_dir"] = d / "no_images"
    f["empty_dir"].mkdir()
    f["fake_png"] = d / "photo.png"
    f["fake_png"].write_text("not an image")
    f["fake_video"] = d / "clip.mp4"
    f["fake_video"].write_text("not a video")
    f["real_png"] = d / "street.png"
    cv2.imwrite(str(f["real_png"]), np.full((32, 64, 3), 90, np.uint8))
    f["bad_toml"] = d / "bad.toml"
    f["bad_toml"].write_text("[model\nname = fast_scnn")
    f["unknown_key"] = d / "unknown.toml"
    f["unknown_key"].write_text('[model]\nname = "fast_scnn"\nlayers = 5\n')
    f["bad_frames"] = d / "frames.toml"
    f["bad_frames"].write_text('[model]\nname = "fast_scnn"\n[input]\nsize = "64x128"\n[export]\ncalib_frames = "many"\n')
    f["a_file"] = d / "a_file"
    f["a_file"].write_text("x")
    return f


def _fast(*extra):
    return ["--model", "fast_scnn", *_SIZE, *extra]


def _w(name, match):
    return (lambda f: _fast("--weights", str(f[name])), match)


def _onnx(name, match, *extra):
    return (lambda f: ["--onnx", str(f[name]), "--num-classes", "2", *_SIZE, *extra], match)


# id -> (argv builder given the files, text the error line must hold)
CASES = {
    # sizes
    "huge_size": (lambda f: ["--model", "fast_scnn", "--input-size", "100000x100000"], "between 1 and 65536"),
    "size_beyond_memory": (lambda f: ["--model", "fast_scnn", "--input-size", "60000x60000"], "GiB of memory"),
    "zero_size": (lambda f: ["--model", "fast_scnn", "--input-size", "0x128"], "between 1 and"),
    "negative_size": (lambda f: ["--model", "fast_scnn", "--input-size=-64x128"], "expected HxW"),
    "size_looks_like_flag": (lambda f: ["--model", "fast_scnn", "--input-size", "-64x128"], "expected one argument"),
    "size_word": (lambda f: ["--model", "fast_scnn", "--input-size", "full"], "expected HxW"),
    "size_not_multiple": (lambda f: ["--model", "fast_scnn", "--input-size", "100x200"], "multiples of 32"),
    "no_size": (lambda f: ["--model", "fast_scnn"], "--input-size HxW is required"),
    "dynamic_no_colon": (lambda f: _fast("--dynamic", "64x128"), "expected MINHxMINW:MAXHxMAXW"),
    "dynamic_reversed": (lambda f: _fast("--dynamic", "256x512:64x128"), "minimum is larger"),
    "size_outside_dynamic": (lambda f: _fast("--dynamic", "128x256:256x512"), "outside --dynamic"),
    # numbers
    "calib_frames_zero": (lambda f: _fast("--calib-frames", "0"), "at least 1"),
    "calib_frames_negative": (lambda f: _fast("--calib-frames", "-3"), "at least 1"),
    "calib_frames_fraction": (lambda f: _fast("--calib-frames", "2.5"), "whole number"),
    "calib_frames_huge": (lambda f: _fast("--calib-frames", "100000"), "at most 1000"),
    "workspace_negative": (lambda f: _fast("--workspace", "-1"), "at least 16"),
    "workspace_zero": (lambda f: _fast("--workspace", "0"), "at least 16"),
    "gate_above_one": (lambda f: _fast("--gate-fp16", "1.5"), "at most 1.0"),
    "gate_zero": (lambda f: _fast("--gate-fp32", "0"), "above 0.0"),
    "gate_nan": (lambda f: _fast("--gate-engine", "nan"), "--gate-engine"),
    "gate_percent": (lambda f: _fast("--gate-fp16", "99.5%"), "expected a number"),
    "std_zero": (lambda f: _fast("--std", "0,0,0"), "above 0"),
    "std_negative": (lambda f: _fast("--std", "0.2,-0.2,0.2"), "above 0"),
    "mean_nan": (lambda f: _fast("--mean", "nan,0.4,0.4"), "NaN or infinity"),
    "mean_inf": (lambda f: _fast("--mean", "inf,0.4,0.4"), "NaN or infinity"),
    "mean_two_values": (lambda f: _fast("--mean", "0.5,0.5"), "three numbers"),
    "value_scale_zero": (lambda f: _fast("--value-scale", "0"), "above 0.0"),
    "value_scale_inf": (lambda f: _fast("--value-scale", "inf"), "--value-scale"),
    "num_classes_zero": (lambda f: _fast("--num-classes", "0"), "at least 1"),
    "num_classes_huge": (lambda f: _fast("--num-classes", "1000000"), "at most 65535"),
    "num_classes_word": (lambda f: _fast("--num-classes", "nineteen"), "whole number"),
    # names and choices
    "unknown_model": (lambda f: ["--model", "no_such_net", *_SIZE], "unknown model"),
    "head_choice": (lambda f: _fast("--head", "softmax"), "choose one of logits, labels"),
    "precision_choice": (lambda f: _fast("--precision", "int4"), "choose one of"),
    "channel_order_choice": (lambda f: _fast("--channel-order", "YUV"), "choose one of RGB, BGR"),
    "classes_unknown": (lambda f: _fast("--classes", "coco"), "not a class set or a file"),
    "classes_wrong_count": (lambda f: _fast("--classes", "voc"), "has 21 classes, not 19"),
    "unknown_flag": (lambda f: _fast("--fp8"), "unrecognized arguments: --fp8"),
    "model_and_onnx": (lambda f: _fast("--onnx", str(f["onnx"])), "not both"),
    "no_source": (lambda f: [*_SIZE], "pass either --model"),
    # checkpoints that are not what they are called
    "weights_missing": (lambda f: _fast("--weights", str(f["good"].with_name("nope.pth"))), "no such file"),
    "weights_empty": _w("empty", "an empty file"),
    "weights_one_byte": _w("one_byte", "damaged"),
    "weights_text": _w("text", "a text file"),
    "weights_html": _w("html", "an HTML page"),
    "weights_lfs": _w("lfs", "git lfs pull"),
    "weights_json": _w("json", "a JSON file"),
    "weights_npy": _w("npy", "a NumPy array"),
    "weights_npz": _w("npz", "a NumPy archive"),
    "weights_truncated": _w("truncated", "truncated"),
    "weights_other_zip": _w("other_zip", "zip archive that is not a PyTorch checkpoint"),
    "weights_whole_module": _w("module", "state_dict()"),
    "weights_torchscript": _w("torchscript", "TorchScript archive"),
    "weights_caffemodel": _w("caffemodel", ".caffemodel"),
    "weights_onnx": _w("onnx_as_pth", "pass it with --onnx"),
    "weights_nan": _w("nan", "'classifier.conv.1.weight' holds NaN"),
    "weights_inf_nested": _w("inf", "'classifier.conv.1.weight' holds NaN or infinity"),
    "weights_other_class_count": _w("five_classes", "does not fit fast_scnn"),
    # graphs that are not what they are called
    "onnx_missing": (lambda f: ["--onnx", str(f["onnx"].with_name("nope.onnx")), "--num-classes", "2", *_SIZE],
                     "no such file"),
    "onnx_no_classes": (lambda f: ["--onnx", str(f["onnx"]), *_SIZE], "--num-classes is required"),
    "onnx_empty": _onnx("empty_onnx", "an empty file"),
    "onnx_html": _onnx("html_onnx", "an HTML page"),
    "onnx_is_checkpoint": _onnx("pth_as_onnx", "--model NAME --weights FILE"),
    "onnx_nan_weight": _onnx("nan_init_onnx", "holds NaN or infinity"),
    "onnx_wrong_classes": (lambda f: ["--onnx", str(f["onnx"]), "--num-classes", "5", *_SIZE], "--num-classes"),
    # calibration data
    "calib_missing": (lambda f: _fast("--calib", str(f["real_png"].with_name("nope"))), "no such file or folder"),
    "calib_empty_folder": (lambda f: _fast("--calib", str(f["empty_dir"])), "holds no images"),
    "calib_fake_image": (lambda f: _fast("--calib", str(f["fake_png"])), "cannot read image"),
    "calib_fake_video": (lambda f: _fast("--calib", str(f["fake_video"])), "cannot read frames"),
    # recipes
    "recipe_missing": (lambda f: [str(f["bad_toml"].with_name("nope.toml"))], "recipe not found"),
    "recipe_bad_toml": (lambda f: [str(f["bad_toml"])], "not valid TOML"),
    "recipe_unknown_key": (lambda f: [str(f["unknown_key"])], "unknown key model.layers"),
    "recipe_bad_number": (lambda f: [str(f["bad_frames"])], "--calib-frames 'many'"),
    # output
    "out_is_a_file": (lambda f: _fast("--out", str(f["a_file"])), "cannot write the bundle"),
}

# Errors found after the graphs were written: the folder keeps them, but never a manifest.
LATE = {
    "onnx_nan_reference": _onnx("nan_onnx", "first at Sqrt node 'bad_sqrt'"),
}


def _run(argv):
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's usage errors
        return exc.code


def _check(case, files, tmp_path, capsys, table, early):
    build, match = table[case]
    argv = build(files)
    out = tmp_path / "bundle"
    if "--out" not in argv and not case.startswith("recipe"):
        argv += ["--out", str(out)]
    rc = _run(["export", *argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("rtseg: error:"), err
    assert match in lines[0], lines[0]
    assert "Traceback" not in err and "weights_only=False" not in err and "\x1b[" not in err
    assert not list(tmp_path.rglob("rtseg.json")) and not list(tmp_path.rglob("*.tmp"))
    if early:
        assert not out.exists(), sorted(p.name for p in out.iterdir())  # no folder left by an early error


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_leaves_nothing(case, files, tmp_path, capsys):
    _check(case, files, tmp_path, capsys, CASES, early=True)


@pytest.mark.parametrize("case", list(LATE))
def test_error_after_graphs_leaves_no_manifest(case, files, tmp_path, capsys):
    _check(case, files, tmp_path, capsys, LATE, early=False)


def test_there_are_at_least_forty_cases():
    assert len(CASES) + len(LATE) >= 40
