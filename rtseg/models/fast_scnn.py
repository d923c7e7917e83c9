"""Fast-SCNN, exact to Tramac/Fast-SCNN-pytorch and its released ``fast_scnn_citys.pth``.

Two branches share the first 1/8 map: learning-to-downsample (1/8, 64 channels) feeds both the fusion module and
a MobileNetV2-style global feature extractor (1/32, with pyramid pooling); the 1/32 context is upsampled by
exactly 4 and fused with the 1/8 detail, then classified at 1/8.

Quirks kept from the reference: the very first conv has padding 0, and every bilinear interpolation uses
``align_corners=True``. The fusion upsample is ``scale_factor=4`` rather than a target size, so H and W must be
multiples of 32 for the two branches to line up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FinalUpsample, SegmentationModel
from .pooling import adaptive_avg_pool
from .registry import register_model


class ConvBNReLU(nn.Module):
    """Conv (no bias) + BN + ReLU in ``.conv.{0,1}``; padding defaults to 0 as in the reference."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm2d(cout),
                                  nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class DepthwiseConv(nn.Module):
    """Depthwise 3x3 + BN + ReLU (``.conv.{0,1}``)."""

    def __init__(self, channels: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SeparableConv(nn.Module):
    """Depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU (``.conv.{0,1,3,4}``)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class LinearBottleneck(nn.Module):
    """MobileNetV2 inverted residual: expand 1x1, depthwise 3x3 (stride), linear 1x1 projection."""

    def __init__(self, cin: int, cout: int, expansion: int = 6, stride: int = 1):
        super().__init__()
        hidden = cin * expansion
        self.use_shortcut = stride == 1 and cin == cout
        self.block = nn.Sequential(
            ConvBNReLU(cin, hidden, 1), DepthwiseConv(hidden, stride),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_shortcut else out


class PyramidPooling(nn.Module):
    """Bins 1, 2, 3, 6, each pooled, reduced to C/4 channels and upsampled back; concatenated with the input."""

    bins = (1, 2, 3, 6)

    def __init__(self, channels: int, cout: int):
        super().__init__()
        inter = channels // 4
        self.conv1 = ConvBNReLU(channels, inter, 1)
        self.conv2 = ConvBNReLU(channels, inter, 1)
        self.conv3 = ConvBNReLU(channels, inter, 1)
        self.conv4 = ConvBNReLU(channels, inter, 1)
        self.out = ConvBNReLU(channels * 2, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, h, w) -> (N, cout, h, w)
        size = (x.shape[-2], x.shape[-1])
        feats = [x]
        for conv, bins in zip((self.conv1, self.conv2, self.conv3, self.conv4), self.bins):
            pooled = conv(adaptive_avg_pool(x, bins))  # (N, C/4, bins, bins)
            feats.append(F.interpolate(pooled, size=size, mode="bilinear", align_corners=True))
        return self.out(torch.cat(feats, dim=1))  # (N, 2C, h, w) -> (N, cout, h, w)


class LearningToDownsample(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = ConvBNReLU(3, 32, 3, 2)  # padding 0: (H-3)//2 + 1
        self.dsconv1 = SeparableConv(32, 48, 2)
        self.dsconv2 = SeparableConv(48, 64, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, 64, H/8, W/8)
        return self.dsconv2(self.dsconv1(self.conv(x)))


class GlobalFeatureExtractor(nn.Module):
    def __init__(self):
        super().__init__()
        self.bottleneck1 = self._stage(64, 64, stride=2)
        self.bottleneck2 = self._stage(64, 96, stride=2)
        self.bottleneck3 = self._stage(96, 128, stride=1)
        self.ppm = PyramidPooling(128, 128)

    @staticmethod
    def _stage(cin: int, cout: int, stride: int, blocks: int = 3) -> nn.Sequential:
        layers = [LinearBottleneck(cin, cout, 6, stride)]
        layers += [LinearBottleneck(cout, cout, 6, 1) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 64, H/8, W/8) -> (N, 128, H/32, W/32)
        return self.ppm(self.bottleneck3(self.bottleneck2(self.bottleneck1(x))))


class FeatureFusion(nn.Module):
    """ReLU(BN(1x1(detail)) + BN(1x1(dw3x3(up4(context)))))."""

    def __init__(self, high_channels: int = 64, low_channels: int = 128, cout: int = 128):
        super().__init__()
        self.dwconv = DepthwiseConv(low_channels)
        self.conv_lower_res = nn.Sequential(nn.Conv2d(cout, cout, 1), nn.BatchNorm2d(cout))
        self.conv_higher_res = nn.Sequential(nn.Conv2d(high_channels, cout, 1), nn.BatchNorm2d(cout))

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:  # (N,64,h,w), (N,128,h/4,w/4)
        low = F.interpolate(low, scale_factor=4, mode="bilinear", align_corners=True)  # (N, 128, h, w)
        low = self.conv_lower_res(self.dwconv(low))
        return F.relu(self.conv_higher_res(high) + low)  # (N, 128, h, w)


class Classifier(nn.Module):
    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.dsconv1 = SeparableConv(channels, channels)
        self.dsconv2 = SeparableConv(channels, channels)
        # index 0 is the reference's Dropout (identity at inference), kept so the conv stays at key conv.1
        self.conv = nn.Sequential(nn.Identity(), nn.Conv2d(channels, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 128, h, w) -> (N, classes, h, w)
        return self.conv(self.dsconv2(self.dsconv1(x)))


class FastSCNN(SegmentationModel):
    """Fast-SCNN; ``forward_lowres`` gives the 1/8 logits, upsampled bilinearly (align_corners=True)."""

    final_upsample = FinalUpsample("bilinear", align_corners=True)
    size_multiple = 32
    cpu_channels_last = True
    min_size = 32
    ignored_checkpoint_prefixes = ("auxlayer.",)  # present only in checkpoints trained with aux=True

    def __init__(self, num_classes: int = 19):
        super().__init__()
        self.num_classes = num_classes
        self.learning_to_downsample = LearningToDownsample()
        self.global_feature_extractor = GlobalFeatureExtractor()
        self.feature_fusion = FeatureFusion(64, 128, 128)
        self.classifier = Classifier(128, num_classes)

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, C, H/8, W/8)
        detail = self.learning_to_downsample(x)  # (N, 64, H/8, W/8)
        context = self.global_feature_extractor(detail)  # (N, 128, H/32, W/32)
        return self.classifier(self.feature_fusion(detail, context))


@register_model("fast_scnn", family="fast_scnn", classes="cityscapes", default_num_classes=19, output_stride=8,
                size_rule="H, W multiples of 32", checkpoint_layout="Tramac/Fast-SCNN-pytorch fast_scnn_citys.pth",
                aliases=("fastscnn",))
def fast_scnn(num_classes: int = 19) -> FastSCNN:
    return FastSCNN(num_classes)
