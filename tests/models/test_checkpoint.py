"""Checkpoint loading: the layouts public training scripts save, and clear errors for the ones that do not fit."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from rtseg import RtsegError
from rtseg.models import load_checkpoint
from rtseg.models.base import FinalUpsample, SegmentationModel


class TinySeg(SegmentationModel):
    final_upsample = FinalUpsample("bilinear", align_corners=False)
    size_multiple = 4
    ignored_checkpoint_prefixes = ("aux_head.",)

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.num_classes = num_classes
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward_lowres(self, x):  # (N, 3, H, W) -> (N, C, H/2, W/2)
        return self.head(self.body(x))


def _trained_state(num_classes: int = 3, seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    m = TinySeg(num_classes)
    for p in m.state_dict().values():
        if p.dtype.is_floating_point:
            p.uniform_(0.5, 1.5)
    return m.state_dict()


@pytest.mark.parametrize("layout", ["bare", "state_dict", "model", "model_state", "module_prefix", "nested"])
def test_accepts_the_layouts_training_scripts_save(layout, tmp_path):
    state = _trained_state()
    saved = {
        "bare": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state, "optimizer": {"lr": torch.tensor(0.1)}},
        "model_state": {"model_state": {f"module.{k}": v for k, v in state.items()}, "best_iou": 0.7},
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
        "nested": {"model": {"state_dict": state}},
    }[layout]
    path = tmp_path / "ckpt.pth"
    torch.save(saved, path)
    model = TinySeg().eval()
    load_checkpoint(model, path)
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k], v), k
    x = torch.randn(1, 3, 16, 16)
    assert model(x).shape == (1, 3, 16, 16)


def test_aux_keys_are_skipped_and_logged(tmp_path, caplog):
    state = dict(_trained_state())
    state["aux_head.weight"] = torch.ones(3, 8, 1, 1)
    path = tmp_path / "ckpt.pth"
    torch.save(state, path)
    with caplog.at_level(logging.DEBUG, logger="rtseg.models.checkpoint"):
        load_checkpoint(TinySeg(), path)
    assert "aux_head.weight" in caplog.text


def test_other_class_count_names_the_misshaped_keys(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save(_trained_state(num_classes=7), path)
    with pytest.raises(RtsegError) as err:
        load_checkpoint(TinySeg(3), path)
    msg = str(err.value)
    assert "head.weight (7, 8, 1, 1) vs (3, 8, 1, 1)" in msg and "num_classes=3" in msg
    assert "\n" not in msg


def test_other_architecture_names_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"encoder.conv.weight": torch.ones(4, 3, 3, 3), "decoder.weight": torch.ones(2)}, path)
    with pytest.raises(RtsegError, match=r"missing: body\.0\.weight.*unexpected: encoder\.conv\.weight"):
        load_checkpoint(TinySeg(), path)


def test_partial_load_leaves_the_model_untouched(tmp_path):
    state = dict(_trained_state())
    del state["head.bias"]
    path = tmp_path / "ckpt.pth"
    torch.save(state, path)
    model = TinySeg()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RtsegError, match="1 missing: head.bias"):
        load_checkpoint(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(RtsegError, match="checkpoint not found"):
        load_checkpoint(TinySeg(), tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(RtsegError, match="cannot read checkpoint"):
        load_checkpoint(TinySeg(), bad)
    truncated = tmp_path / "truncated.pth"
    torch.save(_trained_state(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(RtsegError, match="cannot read checkpoint"):
        load_checkpoint(TinySeg(), truncated)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _trained_state(), "hook": _Payload()}, path)
    with pytest.raises(RtsegError, match="cannot read checkpoint"):
        load_checkpoint(TinySeg(), path)


def test_non_state_dict_content(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(RtsegError, match="holds no state_dict"):
        load_checkpoint(TinySeg(), path)
