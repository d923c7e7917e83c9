"""Each model reproduces its public reference implementation's output from that repository's checkpoint layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtseg.models import create_model

from .reference import manifest, reference_input, reference_views, save_reference_checkpoint

FIXTURES = [
    "fcn32s_vgg16", "fcn16s_vgg16", "fcn8s_vgg16", "fcn8s_atonce_vgg16", "fcn_resnet50_tv", "fcn_resnet101_tv",
    "bisenetv1", "bisenetv2", "fast_scnn", "icnet_liminn", "icnet_ptsemseg_bn", "icnet_ptsemseg_nobn",
    "fcn_alexnet",
]


@pytest.mark.parametrize("stem", FIXTURES)
def test_reproduces_reference_logits(stem, reference_dir, tmp_path):
    man = manifest(reference_dir, stem)
    ckpt = save_reference_checkpoint(man, tmp_path / f"{stem}.pth")
    model = create_model(stem, num_classes=man["num_classes"], checkpoint=ckpt)
    assert sum(p.numel() for p in model.parameters()) <= man["num_params"]

    with torch.inference_mode():
        out = model(reference_input(man))

    assert out.shape[1] == man["num_classes"]
    assert tuple(out.shape[-2:]) == tuple(man["input"]["shape"][-2:])
    for ours, ref in reference_views(reference_dir, stem, out):
        tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
        err = float(np.abs(ours - ref).max())
        agree = float((ours.argmax(0 if ours.ndim == 3 else 1) == ref.argmax(0 if ref.ndim == 3 else 1)).mean())
        assert err <= tol, f"{stem}: max |diff| {err:.3g} > {tol:.3g}"
        assert agree >= 0.999, f"{stem}: argmax agreement {agree:.5f}"
