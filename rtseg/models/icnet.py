"""ICNet, exact to liminn/ICNet-pytorch (the same model and keys as Tramac's awesome-semantic-segmentation ICNet).

Three resolutions of one image cascade into a 1/8 feature map:

* sub1: three stride-2 3x3 ConvBNReLUs on the full image (1/8, 64 channels);
* sub2: the dilated ResNet50-v1s backbone (``pretrained.*``) up to layer2 on the half-size image (1/16, 512 ch);
* sub4: the same backbone, all four stages, on the quarter-size image (1/32, 2048 ch), then a parameter-free
  pyramid pooling (bins 1, 2, 3, 6, summed onto the input).

Two cascade feature fusion (CFF) units merge sub4 into sub2 and the result into sub1; the head upsamples x2,
classifies (1/4) and the final x4 bilinear upsample (``align_corners=True``) restores the input size.

The reference resizes with ``scale_factor`` everywhere; with ``align_corners=True`` that equals resizing to the
floored size. H and W must be multiples of 8: then the 1/4 logits are exactly H/4 x W/4, the reference's x4 equals
resizing to the input size, and its output has the input's size. The cascade label heads (``conv_low_cls``) feed
only the training losses and are not built; ``pretrained.fc`` (ImageNet) is unused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FinalUpsample, SegmentationModel
from .pooling import adaptive_avg_pool
from .registry import register_model
from .resnet import resnet50


class ConvBNReLU(nn.Module):
    """Conv 3x3 (no bias) + BN + ReLU in ``.conv`` / ``.bn``."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def pyramid_pool_sum(x: torch.Tensor, bins=(1, 2, 3, 6)) -> torch.Tensor:  # (N, C, h, w) -> (N, C, h, w)
    """ICNet's parameter-free pyramid pooling: x plus each bin level's average map stretched back to (h, w)."""
    size = (x.shape[-2], x.shape[-1])
    out = x
    for b in bins:
        out = out + F.interpolate(adaptive_avg_pool(x, b), size=size, mode="bilinear", align_corners=True)
    return out


class CascadeFeatureFusion(nn.Module):
    """ReLU(BN(dilated 3x3(resize(low))) + BN(1x1(high))); the training-only ``conv_low_cls`` is left out."""

    def __init__(self, low_channels: int, high_channels: int, cout: int):
        super().__init__()
        self.conv_low = nn.Sequential(nn.Conv2d(low_channels, cout, 3, padding=2, dilation=2, bias=False),
                                      nn.BatchNorm2d(cout))
        self.conv_high = nn.Sequential(nn.Conv2d(high_channels, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:  # -> (N, cout, *high.shape[-2:])
        low = F.interpolate(low, size=(high.shape[-2], high.shape[-1]), mode="bilinear", align_corners=True)
        return F.relu(self.conv_low(low) + self.conv_high(high))


class ICHead(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.cff_12 = CascadeFeatureFusion(128, 64, 128)
        self.cff_24 = CascadeFeatureFusion(2048, 512, 128)
        self.conv_cls = nn.Conv2d(128, num_classes, 1, bias=False)

    def forward(self, sub1: torch.Tensor, sub2: torch.Tensor, sub4: torch.Tensor) -> torch.Tensor:
        x = self.cff_24(sub4, sub2)  # (N, 128, H/16, W/16)
        x = self.cff_12(x, sub1)  # (N, 128, H/8, W/8)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)  # (N, 128, H/4, W/4)
        return self.conv_cls(x)  # (N, classes, H/4, W/4)


class ICNet(SegmentationModel):
    """ICNet with a ResNet-50 backbone; ``forward_lowres`` gives the 1/4 logits (the reference's ``outputs[1]``)."""

    final_upsample = FinalUpsample("bilinear", align_corners=True)
    size_multiple = 8
    min_size = 8
    ignored_checkpoint_prefixes = ("pretrained.fc.", "head.cff_12.conv_low_cls.", "head.cff_24.conv_low_cls.")

    def __init__(self, num_classes: int = 19):
        super().__init__()
        self.num_classes = num_classes
        self.conv_sub1 = nn.Sequential(ConvBNReLU(3, 32, 2), ConvBNReLU(32, 32, 2), ConvBNReLU(32, 64, 2))
        self.pretrained = resnet50(deep_stem=True, dilate=(False, True, True))
        self.head = ICHead(num_classes)

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, C, H/4, W/4)
        backbone = self.pretrained
        sub1 = self.conv_sub1(x)  # (N, 64, H/8, W/8)
        half = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=True)  # (N, 3, H/2, W/2)
        sub2 = backbone.layer2(backbone.layer1(backbone.stem(half)))  # (N, 512, H/16, W/16)
        quarter = F.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=True)  # (N, 3, H/4, W/4)
        sub4 = pyramid_pool_sum(backbone(quarter)[3])  # (N, 2048, H/32, W/32)
        return self.head(sub1, sub2, sub4)


@register_model("icnet_liminn", family="icnet", classes="cityscapes", default_num_classes=19, output_stride=4,
                size_rule="H, W multiples of 8",
                checkpoint_layout="liminn/ICNet-pytorch icnet_resnet50_197_0.710_best_model.pth",
                aliases=("icnet", "icnet_resnet50"))
def icnet_liminn(num_classes: int = 19) -> ICNet:
    return ICNet(num_classes)
