"""What is specific to the FCN family: learned bilinear upsampling, the at-once skip scaling, any input size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rtseg.errors import RtsegError
from rtseg.models import create_model, model_info
from rtseg.models.fcn import bilinear_kernel

NUM_CLASSES = 3  # small heads; the VGG16 trunk dominates the cost either way


@pytest.fixture(scope="module")
def fcn8s():
    torch.manual_seed(0)
    return create_model("fcn8s", num_classes=NUM_CLASSES)


@pytest.mark.parametrize("name", ["upscore2", "upscore_pool4", "upscore8"])
def test_deconvolutions_start_as_bilinear_upsampling(fcn8s, name):
    """Freshly built deconvs are the Caffe bilinear kernel: cropped by stride/2 they equal F.interpolate inside."""
    deconv = getattr(fcn8s, name)
    k, s = deconv.kernel_size[0], deconv.stride[0]
    assert torch.equal(deconv.weight, bilinear_kernel(NUM_CLASSES, k))

    low = torch.randn(2, NUM_CLASSES, 5, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        up = deconv(low)  # (2, C, (5 + 1) * s, (7 + 1) * s)
    assert tuple(up.shape[-2:]) == (6 * s, 8 * s)
    ours = up[:, :, s // 2:s // 2 + 5 * s, s // 2:s // 2 + 7 * s]  # (2, C, 5s, 7s)
    ref = F.interpolate(low, scale_factor=s, mode="bilinear", align_corners=False)
    # At the borders interpolate replicates the edge while the deconvolution sees zeros; compare inside.
    inner = (slice(None), slice(None), slice(s, 4 * s + 1), slice(s, 6 * s + 1))
    torch.testing.assert_close(ours[inner], ref[inner], rtol=0, atol=1e-5)
    assert (ours[:, :, 0, :] - ref[:, :, 0, :]).abs().max() > 1e-3  # the borders do differ: not a plain resize


def test_fcn8s_atonce_differs_from_fcn8s_only_by_skip_scaling(fcn8s):
    atonce = create_model("fcn8s_atonce", num_classes=NUM_CLASSES)
    atonce.load_state_dict(fcn8s.state_dict())  # same keys: a checkpoint cannot tell them apart
    x = torch.randn(1, 3, 37, 45, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        plain, scaled = fcn8s(x), atonce(x)
    assert plain.shape == scaled.shape == (1, NUM_CLASSES, 37, 45)  # odd sizes: still exactly the input size
    assert (plain - scaled).abs().max() > 1e-2 * plain.abs().max()

    # score_pool{3,4} are linear in their input, so scaling their weights instead must give the at-once output.
    state = fcn8s.state_dict()
    state["score_pool4.weight"] = state["score_pool4.weight"] * 0.01
    state["score_pool3.weight"] = state["score_pool3.weight"] * 0.0001
    folded = create_model("fcn8s_vgg16", num_classes=NUM_CLASSES, checkpoint=state)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), scaled, rtol=1e-5, atol=1e-5 * float(scaled.abs().max()))


def test_vgg16_fcn_output_is_input_size_even_for_tiny_inputs(fcn8s):
    # The 100-pixel padding keeps fc6 (7x7, unpadded) valid: even 1 pixel high gives a full-size output.
    x = torch.randn(2, 3, 1, 9)
    with torch.inference_mode():
        out = fcn8s(x)
    assert out.shape == (2, NUM_CLASSES, 1, 9)
    assert torch.isfinite(out).all()


def test_checkpoint_of_another_class_count_names_the_misshaped_keys(fcn8s):
    with pytest.raises(RtsegError) as info:
        create_model("fcn8s_vgg16", num_classes=5, checkpoint=fcn8s.state_dict())
    message = str(info.value)
    assert f"score_fr.weight ({NUM_CLASSES}, 4096, 1, 1) vs (5, 4096, 1, 1)" in message
    assert "num_classes=5" in message


def test_fcn_resnet_skips_the_aux_head_and_takes_tiny_inputs():
    torch.manual_seed(0)
    source = create_model("fcn_resnet50", num_classes=NUM_CLASSES)
    state = dict(source.state_dict())
    state["aux_classifier.4.weight"] = torch.zeros(NUM_CLASSES, 256, 1, 1)  # as in torchvision's checkpoints
    model = create_model("fcn_resnet50_tv", num_classes=NUM_CLASSES, checkpoint=state)
    assert not any(k.startswith("aux_classifier") for k in model.state_dict())
    assert model_info("fcn_resnet50").output_stride == 8

    for size in [(1, 1), (9, 17), (33, 20)]:
        x = torch.randn(1, 3, *size)
        with torch.inference_mode():
            low, out = model.forward_lowres(x), model(x)
            expected = source(x)
        assert tuple(low.shape[-2:]) == tuple(-(-n // 8) for n in size)  # output stride 8, rounded up
        assert out.shape == (1, NUM_CLASSES, *size)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)

    del state["classifier.4.bias"]
    with pytest.raises(RtsegError, match="missing: classifier.4.bias"):
        create_model("fcn_resnet50_tv", num_classes=NUM_CLASSES, checkpoint=state)
