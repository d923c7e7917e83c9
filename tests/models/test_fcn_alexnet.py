"""FCN-AlexNet: the Caffe fixture from a .caffemodel, other sizes against an independent functional statement,
DIGITS' layout, and the ImageNet/legacy Caffe forms of the same weights.

(The fixture from a plain state_dict is in test_reference_fixtures.py, with the other models.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rtseg.models import create_model

from .caffe_files import Layer, layers_from_state_dict, write_caffemodel
from .reference import manifest, reference_input, reference_state_dict

STEM = "fcn_alexnet"


@pytest.fixture(scope="module")
def fixture(reference_dir):
    """(manifest, rule-filled state_dict, model loaded from it)."""
    man = manifest(reference_dir, STEM)
    state = reference_state_dict(man)
    return man, state, create_model(STEM, checkpoint=state)


def statement(x: torch.Tensor, w: dict, upscore_groups: int = 1) -> torch.Tensor:
    """voc-fcn-alexnet written out from the Caffe prototxt, independently of rtseg's module (LRN spelled out)."""

    def lrn(h):  # Caffe ACROSS_CHANNELS: h / (1 + alpha / n * sum of squares over n = 5 channels) ^ beta
        squares = F.pad(h * h, (0, 0, 0, 0, 2, 2))  # zero channels either side
        window = sum(squares[:, i:i + h.shape[1]] for i in range(5))
        return h / (1 + 1e-4 / 5 * window) ** 0.75

    def pool(h):  # Caffe pooling rounds up
        return F.max_pool2d(h, 3, 2, ceil_mode=True)

    h = lrn(pool(F.conv2d(x, w["conv1.weight"], w["conv1.bias"], stride=4, padding=100).relu()))
    h = lrn(pool(F.conv2d(h, w["conv2.weight"], w["conv2.bias"], padding=2, groups=2).relu()))
    h = F.conv2d(h, w["conv3.weight"], w["conv3.bias"], padding=1).relu()
    h = F.conv2d(h, w["conv4.weight"], w["conv4.bias"], padding=1, groups=2).relu()
    h = pool(F.conv2d(h, w["conv5.weight"], w["conv5.bias"], padding=1, groups=2).relu())
    h = F.conv2d(h, w["fc6.weight"], w["fc6.bias"]).relu()
    h = F.conv2d(h, w["fc7.weight"], w["fc7.bias"]).relu()
    h = F.conv2d(h, w["score_fr.weight"], w["score_fr.bias"])
    h = F.conv_transpose2d(h, w["upscore.weight"], stride=32, groups=upscore_groups)
    return h[:, :, 18:18 + x.shape[2], 18:18 + x.shape[3]]


def _assert_matches(ours: torch.Tensor, ref: np.ndarray | torch.Tensor) -> None:
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape
    tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert float(np.abs(ours - ref).max()) <= tol
    assert float((ours.argmax(1) == ref.argmax(1)).mean()) >= 0.999


def test_caffemodel_reproduces_the_fixture(fixture, reference_dir, tmp_path):
    man, state, _ = fixture
    path = write_caffemodel(tmp_path / "fcn-alexnet-pascal.caffemodel", layers_from_state_dict(state), name="FCN")
    model = create_model(STEM, checkpoint=path)
    assert model.checkpoint_preprocessing is None  # no Power layer: the default (Caffe VOC mean) applies
    with torch.inference_mode():
        out = model(reference_input(man))
    _assert_matches(out, np.load(reference_dir / f"{STEM}.npz")["logits"])


@pytest.mark.parametrize("size", [(1, 1), (50, 75)])
def test_other_sizes_match_the_functional_statement(fixture, size):
    _, state, model = fixture
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 3, *size)).astype(np.float32))
    with torch.inference_mode():
        out = model(x)
        ref = statement(x, state)
    assert out.shape == (1, 21, *size)
    _assert_matches(out, ref)


def test_digits_layout_loads_as_the_full_form_with_a_diagonal_kernel(fixture):
    _, state, _ = fixture
    per_class = state["upscore.weight"][torch.arange(21), torch.arange(21)][:, None]  # (21, 1, 63, 63)
    digits = {k: v for k, v in state.items() if not k.startswith(("score_fr", "upscore"))}
    digits |= {"score_fr_21classes.weight": state["score_fr.weight"], "score_fr_21classes.bias": state["score_fr.bias"],
               "upscore_21classes.weight": per_class}
    model = create_model(STEM, checkpoint=digits)
    assert model.checkpoint_preprocessing["mean"] == (116.0, 116.0, 116.0)
    assert model.checkpoint_preprocessing["channel_order"] == "BGR"

    # It is the full form with each class's kernel on the diagonal ...
    diagonal = torch.zeros_like(state["upscore.weight"])
    diagonal[torch.arange(21), torch.arange(21)] = per_class[:, 0]
    for key, value in (state | {"upscore.weight": diagonal}).items():
        assert torch.equal(model.state_dict()[key], value), key
    # ... which computes DIGITS' group-21 deconvolution.
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 3, 45, 61)).astype(np.float32))
    with torch.inference_mode():
        out = model(x)
        grouped = statement(x, digits | {k: state[k] for k in ("score_fr.weight", "score_fr.bias")}
                            | {"upscore.weight": per_class}, upscore_groups=21)
    _assert_matches(out, grouped)

    # (DIGITS' .caffemodel, with its "minus 116" Power layer, is exported in tests/export/test_fcn_alexnet_export.py.)

def test_imagenet_surgery_and_legacy_blob_shapes(fixture, tmp_path):
    """A V1 file with 4-number blob dims (biases (1, 1, 1, N)) and fc6/fc7 as InnerProduct (4096, 9216), as the
    ImageNet AlexNet the FCN was made from stores them, loads to the same weights."""
    _, state, model = fixture
    layers = []
    for layer in layers_from_state_dict(state):
        if layer.name in ("fc6", "fc7"):
            weight, bias = layer.blobs
            layer = Layer(layer.name, "InnerProduct", [weight.reshape(weight.shape[0], -1), bias])
        elif layer.name == "upscore":
            layer.type = "Deconvolution"
        layers.append(layer)
    layers.insert(1, Layer("relu1", "ReLU"))
    path = write_caffemodel(tmp_path / "legacy.caffemodel", layers, name="CaffeNet", legacy=True)
    legacy = create_model(STEM, checkpoint=path)
    for key, value in model.state_dict().items():
        assert torch.equal(legacy.state_dict()[key], value), key
