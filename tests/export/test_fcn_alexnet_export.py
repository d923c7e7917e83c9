"""``rtseg export export/fcn_alexnet.toml`` with DIGITS' .caffemodel: a verified dynamic bundle whose
preprocessing is the checkpoint's input shift; the recipe's default is Caffe's VOC mean.

One export (FCN-AlexNet has 58M parameters, and its 100-pixel padding makes even a 64x64 input large inside),
at small sizes, through rtseg's FP16 converter with one calibration frame.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rtseg.cli import main
from rtseg.export.recipes import load_recipe
from rtseg.models import default_preprocessing
from rtseg.bundle import Preprocessing, normalize
from rtseg.scenes import synthetic_scenes
from rtseg.export.verify import onnxruntime_runner
from rtseg.models import create_model, model_info

from ..conftest import REPO
from ..models.caffe_files import Layer, layers_from_state_dict, write_caffemodel
from ..models.reference import manifest, reference_state_dict

RECIPE = REPO / "export" / "fcn_alexnet.toml"


@pytest.fixture(scope="module")
def bundle(reference_dir, tmp_path_factory):
    """DIGITS' layout (score_fr_21classes, a group-21 upscore, the "minus 116" Power layer), fixture weights."""
    state = reference_state_dict(manifest(reference_dir, "fcn_alexnet"))
    per_class = state.pop("upscore.weight")[torch.arange(21), torch.arange(21)][:, None]  # (21, 1, 63, 63)
    digits = {k: v for k, v in state.items() if not k.startswith("score_fr")}
    digits |= {"score_fr_21classes.weight": state["score_fr.weight"], "score_fr_21classes.bias": state["score_fr.bias"],
               "upscore_21classes.weight": per_class}
    tmp = tmp_path_factory.mktemp("fcn_alexnet")
    weights = write_caffemodel(tmp / "fcn_alexnet.caffemodel",
                               [Layer("shift", "Power", shift=-116.0), *layers_from_state_dict(digits)])
    out = tmp / "bundle"
    code = main(["export", str(RECIPE), "--weights", str(weights), "--input-size", "64x64", "--dynamic",
                 "32x32:96x96", "--calib-frames", "1", "--fp16-converter", "rtseg", "--out", str(out)])
    assert code == 0
    return out, create_model("fcn_alexnet", checkpoint=weights)


def test_bundle_passes_its_gates_with_the_checkpoints_preprocessing(bundle):
    out, _ = bundle
    man = json.loads((out / "rtseg.json").read_text())
    ver = man["verification"]
    assert ver["onnx"]["passed"] and ver["onnx"]["agreement"] >= 0.9999
    assert ver["onnx_fp16"]["passed"] and ver["onnx_fp16"]["agreement"] >= 0.995
    assert man["input"]["profile"]["min"] == [1, 3, 32, 32] and man["input"]["profile"]["max"] == [1, 3, 96, 96]
    assert man["output"]["upsample"]["mode"] == "none"  # the learned deconvolution is in the graph
    pre = man["input"]
    assert (pre["mean"], pre["std"], pre["channel_order"], pre["value_scale"]) == ([116.0] * 3, [1.0] * 3, "BGR",
                                                                                  255.0)
    assert man["model"]["class_names"][:2] == ["background", "aeroplane"] and len(man["model"]["palette"]) == 21


def test_dynamic_graph_runs_at_a_size_the_export_never_saw(bundle):
    out, model = bundle
    pre = Preprocessing((116.0,) * 3, (1.0,) * 3, "BGR", 255.0)
    x = normalize(synthetic_scenes(1, 48, 80, seed=3), pre)  # (1, 3, 48, 80)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    ours = onnxruntime_runner(out / "model.onnx")(x)
    assert ours.shape == ref.shape == (1, 21, 48, 80)
    assert float((ours.argmax(1) == ref.argmax(1)).mean()) >= 0.9999


def test_recipe_defaults_to_caffes_voc_mean():
    options = load_recipe(RECIPE)
    assert (options["model"], options["num_classes"], options["classes"]) == ("fcn_alexnet", 21, "voc")
    pre = default_preprocessing("fcn_alexnet", model_info("fcn_alexnet").family)
    assert np.allclose(pre.mean, (104.00699, 116.66877, 122.67892)) and pre.channel_order == "BGR"
    assert (pre.std, pre.value_scale) == ((1.0, 1.0, 1.0), 255.0)
