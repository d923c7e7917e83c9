"""The Caffe ICNet of meetps/pytorch-semseg: its size rule, its checkpoint files, and its two key layouts.

Exactness against the reference lives in test_reference_fixtures.py; these tests need no fixtures.
"""

from __future__ import annotations

import pytest
import torch

from rtseg import RtsegError
from rtseg.models import create_model, load_checkpoint, model_info
from rtseg.models.icnet_caffe import caffe_pyramid_pooling

BN, NOBN = "icnet_ptsemseg_bn", "icnet_ptsemseg_nobn"


def _training_only_keys(batchnorm: bool, num_classes: int = 19) -> dict[str, torch.Tensor]:
    """The keys a ptsemseg checkpoint carries but the eval forward never reads: PPM 1x1 convs, CFF classifiers."""
    keys = {}
    for i in range(4):
        unit = f"pyramid_pooling.path_module_list.{i}.cbr_unit"
        keys[f"{unit}.0.weight"] = torch.randn(256, 1024, 1, 1)
        if batchnorm:
            keys.update({f"{unit}.1.weight": torch.ones(256), f"{unit}.1.bias": torch.zeros(256),
                         f"{unit}.1.running_mean": torch.zeros(256), f"{unit}.1.running_var": torch.ones(256),
                         f"{unit}.1.num_batches_tracked": torch.tensor(0)})
        else:
            keys[f"{unit}.0.bias"] = torch.zeros(256)
    for name, channels in (("cff_sub24", 256), ("cff_sub12", 128)):
        keys[f"{name}.low_classifier_conv.weight"] = torch.randn(num_classes, channels, 1, 1)
        keys[f"{name}.low_classifier_conv.bias"] = torch.randn(num_classes)
    return keys


def _reference_layout(name: str, seed: int) -> dict[str, torch.Tensor]:
    """A full ptsemseg state_dict for ``name`` (our keys plus the training-only ones), with random values."""
    g = torch.Generator().manual_seed(seed)
    state = {k: (torch.rand(v.shape, generator=g) + 0.5 if v.is_floating_point() else v.clone())
             for k, v in create_model(name).state_dict().items()}
    state.update(_training_only_keys(name == BN))
    return state


@pytest.mark.parametrize("name", [BN, NOBN])
def test_accepts_32k_plus_1_from_1025x2049(name):
    model = create_model(name, num_classes=3)
    for h, w in ((1025, 2049), (1057, 2049), (1025, 2081), (2049, 4097)):
        model.check_input_size(h, w)
        assert model.nearest_valid_size(h, w) == (h, w)


@pytest.mark.parametrize("size, suggestion", [
    ((1024, 2048), "1025x2049"),  # multiples of 32: the branches do not meet
    ((1026, 2050), "1057x2081"),  # runs in the reference, but its output is 1025x2049
    ((993, 2049), "1025x2049"),  # 1/32 map smaller than the 33x65 pooling window
    ((2049, 1025), "2049x2049"),  # portrait: the window is 33 high and 65 wide
    ((512, 1024), "1025x2049"),
])
def test_rejects_other_sizes_and_says_which_work(size, suggestion):
    model = create_model(NOBN)
    with pytest.raises(RtsegError, match="32k\\+1") as err:
        model.check_input_size(*size)
    message = str(err.value)
    assert "\n" not in message and "1025x2049" in message and suggestion in message
    with pytest.raises(RtsegError, match="32k\\+1"):  # forward checks before computing anything
        model(torch.zeros(1, 3, *size))


def test_registry_entries():
    for name, aliases in ((BN, ("icnet_caffe_bn", "icnetBN_caffe")), (NOBN, ("icnet_caffe", "icnet-caffe-nobn"))):
        info = model_info(name)
        assert (info.default_num_classes, info.output_stride) == (19, 4)
        assert "32k+1" in info.size_rule
        assert all(model_info(a).name == name for a in aliases)
    model = create_model("icnet_caffe")
    assert model.dynamic_shapes_supported is False
    assert model.final_upsample.mode == "bilinear" and model.final_upsample.align_corners


@pytest.mark.parametrize("name", [BN, NOBN])
def test_loads_module_prefixed_model_state_checkpoint(name, tmp_path):
    state = _reference_layout(name, seed=1)
    path = tmp_path / "icnet.pth"
    torch.save({"epoch": 90000, "model_state": {f"module.{k}": v for k, v in state.items()},
                "optimizer_state": {}, "best_iou": 0.7}, path)

    model = create_model(name, checkpoint=path)

    own = model.state_dict()
    assert not any(k.startswith(("pyramid_pooling.", "cff_sub24.low_classifier", "cff_sub12.low_classifier"))
                   for k in own)  # training-only parts are not built
    for k, v in own.items():
        assert torch.equal(v, state[k]), k


def test_bn_and_nobn_layouts_are_not_interchangeable():
    bn_keys, nobn_keys = set(create_model(BN).state_dict()), set(create_model(NOBN).state_dict())
    assert len(bn_keys) == 380 and len(nobn_keys) == 128  # ptsemseg's 408 and 140 keys, less the unused ones
    assert "conv5_4_k1.cbr_unit.1.running_var" in bn_keys and "conv5_4_k1.cbr_unit.0.bias" in nobn_keys

    with pytest.raises(RtsegError, match="missing: .*cbr_unit.0.bias"):
        load_checkpoint(create_model(NOBN), {"model_state": _reference_layout(BN, seed=2)})
    with pytest.raises(RtsegError, match="missing: .*unit.1.weight"):
        load_checkpoint(create_model(BN), {"model_state": _reference_layout(NOBN, seed=3)})


def test_wrong_num_classes_is_named():
    with pytest.raises(RtsegError, match="num_classes=5"):
        load_checkpoint(create_model(BN, num_classes=5), {"model_state": _reference_layout(BN, seed=4)})


def test_pyramid_pooling_at_the_trained_size():
    """At 33x65 the fixed Caffe windows give the 6x6, 3x3, 2x2 and 1x1 pyramid; the 1x1 level is the mean."""
    x = torch.randn(2, 4, 33, 65, dtype=torch.float64)
    out = caffe_pyramid_pooling(x)
    assert out.shape == x.shape
    # A constant map stays constant: every level averages to the same value and adds it.
    c = torch.full((1, 2, 33, 65), 3.0, dtype=torch.float64)
    assert torch.allclose(caffe_pyramid_pooling(c), torch.full_like(c, 15.0))
    # Remove the three finer levels and x itself: what is left is the global mean at every pixel.
    fine = sum(torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, k, s), size=(33, 65),
                                               mode="bilinear", align_corners=True)
               for k, s in (((8, 15), (5, 10)), ((13, 25), (10, 20)), ((17, 33), (16, 32))))
    torch.testing.assert_close(out - x - fine, x.mean((2, 3), keepdim=True).expand_as(x))


def test_lowres_is_the_output_sampled_every_4th_pixel():
    """One pass at 1025x2049: the output is the 1/4 logits zoomed by (n-1)*4+1, i.e. align_corners bilinear."""
    torch.manual_seed(0)
    model = create_model(NOBN, num_classes=3)
    captured = []
    model.classification.register_forward_hook(lambda mod, inp, out: captured.append(out))
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 1025, 2049))
    (low,) = captured
    assert low.shape == (1, 3, 257, 513) and out.shape == (1, 3, 1025, 2049)
    assert torch.equal(model.final_upsample.apply(low, (1025, 2049)), out)
    assert torch.equal(out[..., ::4, ::4], low)
