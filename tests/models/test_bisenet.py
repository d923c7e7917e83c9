"""What is specific to BiSeNet: the released checkpoints come with or without aux heads, and the two versions'
checkpoints are not interchangeable. Exactness against the reference is in test_reference_fixtures.py."""

from __future__ import annotations

import pytest
import torch

from rtseg import RtsegError
from rtseg.models import create_model, load_checkpoint

from .reference import manifest, reference_state_dict


@pytest.mark.parametrize("stem", ["bisenetv1", "bisenetv2"])
def test_train_and_eval_checkpoints_give_identical_logits(stem, reference_dir):
    """aux_mode='train' checkpoints carry the aux heads; aux_mode='eval' ones (tools/demo.py) do not. Both load."""
    man = manifest(reference_dir, stem)
    train_state = reference_state_dict(man)
    ignored = create_model(stem).ignored_checkpoint_prefixes
    eval_state = {k: v for k, v in train_state.items() if not k.startswith(ignored)}
    # the model declares exactly the aux heads as ignorable, nothing the main logits use
    assert set(train_state) - set(eval_state) == set(man["keys_not_used_by_main_logits"])

    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    outs = []
    for state in (train_state, eval_state):
        model = create_model(stem, checkpoint=state)
        with torch.inference_mode():
            outs.append(model(x))
    assert outs[0].shape == (1, 19, 64, 96)
    assert torch.equal(outs[0], outs[1])
    assert outs[0].std() > 0.1  # the weights were really loaded, not left at their initial values


def test_v2_checkpoint_into_v1_names_missing_keys():
    v2_state = create_model("bisenetv2").state_dict()
    with pytest.raises(RtsegError, match=r"missing: cp\.resnet\.conv1\.weight") as info:
        load_checkpoint(create_model("bisenetv1"), v2_state)
    assert "\n" not in str(info.value)


def test_v1_checkpoint_into_v2_names_missing_keys():
    v1_state = create_model("bisenetv1").state_dict()
    with pytest.raises(RtsegError, match=r"missing: detail\.S1\.0\.conv\.weight"):
        load_checkpoint(create_model("bisenetv2"), v1_state)


def test_aux_prefixes_do_not_hide_a_missing_main_head():
    """V1's main head is ``conv_out.``, its aux heads ``conv_out16.``/``conv_out32.``: only the latter are skipped."""
    model = create_model("bisenetv1")
    state = dict(model.state_dict())
    state["conv_out16.conv_out.bias"] = torch.zeros(19)
    del state["conv_out.conv_out.weight"]
    with pytest.raises(RtsegError, match=r"missing: conv_out\.conv_out\.weight"):
        load_checkpoint(model, state)


def test_cityscapes_checkpoint_into_other_class_count_says_num_classes():
    state = create_model("bisenetv2").state_dict()
    with pytest.raises(RtsegError, match="num_classes=5"):
        load_checkpoint(create_model("bisenetv2", num_classes=5), state)


@pytest.mark.parametrize("alias, name", [("bisenet_v1", "bisenetv1"), ("BiSeNet-V2", "bisenetv2")])
def test_aliases(alias, name):
    model = create_model(alias, num_classes=3)
    assert model.model_name == name
    with torch.inference_mode():
        assert model.forward_lowres(torch.zeros(1, 3, 64, 32)).shape == (1, 3, 8, 4)  # output stride 8
