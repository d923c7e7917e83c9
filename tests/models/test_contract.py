"""The contract every registered model keeps, whatever its family (one test class, as in smp).

Run with freshly initialised weights: the reference fixtures check exactness; these check the shared surface at
sizes other than the fixtures', the size rule, the low-resolution split, batching and ONNX tracing.
"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from rtseg import RtsegError
from rtseg.models import create_model, list_models, model_info
from rtseg.models.base import SegmentationModel

# Big VGG/ResNet-101 models are slow to trace; they run the same checks at their smallest valid sizes.
NAMES = list_models()


def _valid_size(model: SegmentationModel, height: int, width: int) -> tuple[int, int]:
    size = model.nearest_valid_size(height, width)
    model.check_input_size(*size)
    assert size[0] >= height and size[1] >= width
    return size


@pytest.fixture(scope="module", params=NAMES)
def model(request):
    torch.manual_seed(0)
    m = create_model(request.param, num_classes=5)
    # Random BN statistics so that normalisation is not the identity.
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m


def test_registry_resolves_aliases():
    for name in NAMES:
        info = model_info(name)
        assert info.name == name
        for alias in info.aliases:
            assert model_info(alias).name == name
    with pytest.raises(RtsegError, match="rtseg models"):
        model_info("no_such_net")


def test_every_fixture_stem_is_a_model():
    stems = {"fcn32s_vgg16", "fcn16s_vgg16", "fcn8s_vgg16", "fcn8s_atonce_vgg16", "fcn_resnet50_tv",
             "fcn_resnet101_tv", "bisenetv1", "bisenetv2", "fast_scnn", "icnet_liminn", "icnet_ptsemseg_bn",
             "icnet_ptsemseg_nobn", "fcn_alexnet"}
    assert stems <= set(NAMES)


class TestModelContract:
    def test_is_inference_form(self, model):
        assert isinstance(model, SegmentationModel)
        assert not model.training
        assert model.num_classes == 5

    def test_output_is_input_size_at_two_sizes(self, model):
        base = (model.min_size, model.min_size)
        for h, w in (_valid_size(model, *base), _valid_size(model, base[0] + 40, base[1] + 90)):
            with torch.inference_mode():
                out = model(torch.randn(1, 3, h, w))
            assert out.shape == (1, 5, h, w)
            assert torch.isfinite(out).all()

    def test_lowres_plus_declared_upsample_is_the_full_output(self, model):
        h, w = _valid_size(model, model.min_size + 30, model.min_size + 70)
        x = torch.randn(1, 3, h, w)
        with torch.inference_mode():
            full = model(x)
            low = model.forward_lowres(x)
        spec = model.final_upsample
        if spec.mode == "none":
            assert low.shape[-2:] == (h, w)
            rebuilt = low
        else:
            assert spec.mode == "bilinear"
            assert low.shape[-2] < h and low.shape[-1] < w
            rebuilt = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=spec.align_corners)
        assert torch.equal(rebuilt, full)

    def test_batch_items_are_independent(self, model):
        h, w = _valid_size(model, model.min_size, model.min_size)
        x = torch.randn(2, 3, h, w)
        with torch.inference_mode():
            both = model(x)
            one = model(x[1:])
        torch.testing.assert_close(both[1:], one, rtol=1e-4, atol=1e-4 * max(1.0, one.abs().max().item()))

    def test_rejects_sizes_outside_the_rule(self, model):
        h, w = _valid_size(model, model.min_size, model.min_size)
        bad = [(h + 1, w), (h, w + 3), (max(1, model.min_size - 1), w)]
        rejected = 0
        for bh, bw in bad:
            try:
                model.check_input_size(bh, bw)
            except RtsegError as exc:
                assert "\n" not in str(exc)
                with pytest.raises(RtsegError):
                    model(torch.randn(1, 3, bh, bw))
                rejected += 1
        accepts_any = model.size_multiple == 1 and model.min_size <= 1
        assert rejected > 0 or accepts_any

    def test_traces_to_onnx(self, model):
        """Both deployable forms trace: the full logits, and the low-resolution logits before the final upsample."""
        import onnx

        h, w = _valid_size(model, model.min_size, model.min_size)
        forms = {"full": model}
        if model.final_upsample.mode != "none":
            forms["lowres"] = _LowRes(model)
        resizes = {}
        for form, module in forms.items():
            buf = io.BytesIO()
            torch.onnx.export(module, (torch.randn(1, 3, h, w),), buf, input_names=["input"],
                              output_names=["logits"], opset_version=17, dynamo=False)
            onnx.checker.check_model(buf.getvalue())  # the bytes as they are (a ModelProto would be serialised again)
            graph = onnx.load_from_string(buf.getvalue())
            assert [o.name for o in graph.graph.output] == ["logits"], form
            resizes[form] = sum(n.op_type == "Resize" for n in graph.graph.node)
        if "lowres" in resizes:  # the final upsample is the one Resize the low-resolution graph leaves out
            assert resizes["lowres"] == resizes["full"] - 1


class _LowRes(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):  # (N, 3, H, W) -> (N, C, h, w)
        return self.model.forward_lowres(x)
