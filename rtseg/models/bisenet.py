"""BiSeNet V1 and V2, exact to CoinCheung/BiSeNet (commit 6b4b67a8e3eb) and its released Cityscapes checkpoints.

Both networks end in logits at 1/8 of the input that the reference upsamples with
``nn.Upsample(scale_factor=8, mode="bilinear", align_corners=False)``; here that upsample is the model's
``final_upsample`` (bilinear to the input size, which is the same thing because H and W are multiples of 32), so
the graph that gets exported stops at the 1/8 logits.

The released checkpoints (``model_final_v1_city_new.pth``, ``model_final_v2_city.pth``) are plain state_dicts of
the ``aux_mode='train'`` models, so they carry the auxiliary heads (V1 ``conv_out16``/``conv_out32``, V2
``aux2``..``aux5_4``). Those heads are not built here and their keys are skipped at load, the way the reference's
own ``aux_mode='eval'`` model does with ``strict=False``.

Input sizes: H and W must be multiples of 32. Both networks add a 1/32 map upsampled by nearest x2 (V1) or x4 (V2)
to a map one or two strides finer; at other sizes those shapes disagree (the reference crashes too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..bundle.preprocessing import Preprocessing
from .base import FinalUpsample, SegmentationModel
from .registry import register_model
from .resnet import resnet18

_SIZE_RULE = "H, W multiples of 32"


class ConvBNReLU(nn.Module):
    """Conv (no bias) -> BN -> ReLU, with the reference's key names ``conv`` and ``bn``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, padding: int | None = None):
        super().__init__()
        padding = kernel // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _channel_attention(feat: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """sigmoid(BN(conv1x1(mean over H, W))): one weight per channel, (N, C, 1, 1)."""
    pooled = feat.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
    return torch.sigmoid(bn(conv(pooled)))


def _nearest_up(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``nn.Upsample(scale_factor=factor)``: the reference's default mode is nearest."""
    return F.interpolate(x, scale_factor=float(factor), mode="nearest")


# ----------------------------------------------------------------------------------------------------- BiSeNet V1


class AttentionRefinement(nn.Module):
    """ARM: f = ConvBNReLU3x3(x); f * channel attention of f."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, 3)
        self.conv_atten = nn.Conv2d(out_ch, out_ch, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return feat * _channel_attention(feat, self.conv_atten, self.bn_atten)


class ContextPath(nn.Module):
    """ResNet18 with ARMs on its 1/16 and 1/32 maps and a global-context vector.

    Returns the refined maps at 1/8 and 1/16 (the reference names them ``feat16_up`` and ``feat32_up``: each is
    named after the stage it came from, one nearest x2 upsample earlier).
    """

    def __init__(self):
        super().__init__()
        self.resnet = resnet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3)
        self.conv_head16 = ConvBNReLU(128, 128, 3)
        self.conv_avg = ConvBNReLU(512, 128, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, _, feat16, feat32 = self.resnet(x)  # (N, 256, H/16, W/16), (N, 512, H/32, W/32)
        context = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))  # (N, 128, 1, 1)
        up32 = self.conv_head32(_nearest_up(self.arm32(feat32) + context, 2))  # (N, 128, H/16, W/16)
        up16 = self.conv_head16(_nearest_up(self.arm16(feat16) + up32, 2))  # (N, 128, H/8, W/8)
        return up16, up32


class SpatialPath(nn.Module):
    """Three strided convs (7x7, 3x3, 3x3) and a 1x1: the detail-preserving 1/8 path."""

    def __init__(self):
        super().__init__()
        self.conv1 = ConvBNReLU(3, 64, 7, stride=2)
        self.conv2 = ConvBNReLU(64, 64, 3, stride=2)
        self.conv3 = ConvBNReLU(64, 64, 3, stride=2)
        self.conv_out = ConvBNReLU(64, 128, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, 128, H/8, W/8)
        return self.conv_out(self.conv3(self.conv2(self.conv1(x))))


class FeatureFusion(nn.Module):
    """FFM: fuse = ConvBNReLU1x1(cat[spatial, context]); fuse * attention + fuse."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_ch, out_ch, 1)
        self.conv = nn.Conv2d(out_ch, out_ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))  # (N, 256, H/8, W/8)
        return feat * _channel_attention(feat, self.conv, self.bn) + feat


class OutputHead(nn.Module):
    """ConvBNReLU3x3 then a 1x1 classifier with bias (the reference's BiSeNetOutput, minus its upsample)."""

    def __init__(self, in_ch: int, mid_ch: int, num_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid_ch, 3)
        self.conv_out = nn.Conv2d(mid_ch, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNetV1(SegmentationModel):
    """BiSeNet V1 (ResNet18 context path + spatial path), main head only."""

    final_upsample = FinalUpsample("bilinear", align_corners=False)
    size_multiple = 32
    cpu_channels_last = True
    min_size = 32
    ignored_checkpoint_prefixes = ("conv_out16.", "conv_out32.")

    def __init__(self, num_classes: int = 19):
        super().__init__()
        self.num_classes = num_classes
        self.cp = ContextPath()
        self.sp = SpatialPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = OutputHead(256, 256, num_classes)

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, C, H/8, W/8)
        context8, _ = self.cp(x)  # (N, 128, H/8, W/8); the 1/16 map fed only the aux head
        return self.conv_out(self.ffm(self.sp(x), context8))


# ----------------------------------------------------------------------------------------------------- BiSeNet V2


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(out_ch)]


class DetailBranch(nn.Module):
    """Wide, shallow 3x3 ConvBNReLU stacks down to 1/8: S1 (64), S2 (64), S3 (128), each starting with stride 2."""

    def __init__(self):
        super().__init__()
        self.S1 = nn.Sequential(ConvBNReLU(3, 64, 3, 2), ConvBNReLU(64, 64, 3))
        self.S2 = nn.Sequential(ConvBNReLU(64, 64, 3, 2), ConvBNReLU(64, 64, 3), ConvBNReLU(64, 64, 3))
        self.S3 = nn.Sequential(ConvBNReLU(64, 128, 3, 2), ConvBNReLU(128, 128, 3), ConvBNReLU(128, 128, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, 128, H/8, W/8)
        return self.S3(self.S2(self.S1(x)))


class StemBlock(nn.Module):
    """Stem to 1/4: conv s2, then a conv branch (1x1, 3x3 s2) beside a max-pool branch, fused by a 3x3."""

    def __init__(self):
        super().__init__()
        self.conv = ConvBNReLU(3, 16, 3, 2)
        self.left = nn.Sequential(ConvBNReLU(16, 8, 1), ConvBNReLU(8, 16, 3, 2))
        self.right = nn.MaxPool2d(3, 2, 1)
        self.fuse = ConvBNReLU(32, 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, 16, H/4, W/4)
        feat = self.conv(x)  # (N, 16, H/2, W/2)
        return self.fuse(torch.cat([self.left(feat), self.right(feat)], dim=1))


class GatherExpand(nn.Module):
    """GE layer, stride 1: ConvBNReLU3x3, depthwise 3x3 expanding x6 (+BN+ReLU), 1x1 project (+BN), + x, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, expand: int = 6):
        super().__init__()
        mid = in_ch * expand
        self.conv1 = ConvBNReLU(in_ch, in_ch, 3)
        self.dwconv = nn.Sequential(*_conv_bn(in_ch, mid, 3, groups=in_ch), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(*_conv_bn(mid, out_ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.dwconv(self.conv1(x))) + x)


class GatherExpandDown(nn.Module):
    """GE layer, stride 2: two depthwise 3x3 (the first strided, no ReLU between), and a depthwise+1x1 shortcut."""

    def __init__(self, in_ch: int, out_ch: int, expand: int = 6):
        super().__init__()
        mid = in_ch * expand
        self.conv1 = ConvBNReLU(in_ch, in_ch, 3)
        self.dwconv1 = nn.Sequential(*_conv_bn(in_ch, mid, 3, 2, groups=in_ch))
        self.dwconv2 = nn.Sequential(*_conv_bn(mid, mid, 3, groups=mid), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(*_conv_bn(mid, out_ch, 1))
        self.shortcut = nn.Sequential(*_conv_bn(in_ch, in_ch, 3, 2, groups=in_ch), *_conv_bn(in_ch, out_ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, Cin, h, w) -> (N, Cout, h/2, w/2)
        feat = self.conv2(self.dwconv2(self.dwconv1(self.conv1(x))))
        return F.relu(feat + self.shortcut(x))


class ContextEmbedding(nn.Module):
    """CE block: BN on the globally pooled vector (a BN on a 1x1 map), 1x1 ConvBNReLU, broadcast add, 3x3."""

    def __init__(self, ch: int = 128):
        super().__init__()
        self.bn = nn.BatchNorm2d(ch)
        self.conv_gap = ConvBNReLU(ch, ch, 1)
        self.conv_last = ConvBNReLU(ch, ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.conv_gap(self.bn(x.mean(dim=(2, 3), keepdim=True)))  # (N, C, 1, 1)
        return self.conv_last(context + x)


class SemanticBranch(nn.Module):
    """Narrow, deep branch to 1/32: stem (1/4), GE stages S3 (1/8), S4 (1/16), S5_4 (1/32), then the CE block."""

    def __init__(self):
        super().__init__()
        self.S1S2 = StemBlock()
        self.S3 = nn.Sequential(GatherExpandDown(16, 32), GatherExpand(32, 32))
        self.S4 = nn.Sequential(GatherExpandDown(32, 64), GatherExpand(64, 64))
        self.S5_4 = nn.Sequential(GatherExpandDown(64, 128), GatherExpand(128, 128), GatherExpand(128, 128),
                                  GatherExpand(128, 128))
        self.S5_5 = ContextEmbedding(128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, 128, H/32, W/32)
        return self.S5_5(self.S5_4(self.S4(self.S3(self.S1S2(x)))))


class BilateralGuidedAggregation(nn.Module):
    """BGA: each branch gates the other at its own resolution; the 1/32 results come back by nearest x4."""

    def __init__(self, ch: int = 128):
        super().__init__()
        self.left1 = nn.Sequential(*_conv_bn(ch, ch, 3, groups=ch), nn.Conv2d(ch, ch, 1, bias=False))
        # count_include_pad=True (the default) matters at the borders
        self.left2 = nn.Sequential(*_conv_bn(ch, ch, 3, 2), nn.AvgPool2d(3, 2, 1, ceil_mode=False))
        self.right1 = nn.Sequential(*_conv_bn(ch, ch, 3))
        self.right2 = nn.Sequential(*_conv_bn(ch, ch, 3, groups=ch), nn.Conv2d(ch, ch, 1, bias=False))
        self.conv = nn.Sequential(*_conv_bn(ch, ch, 3), nn.ReLU(inplace=True))

    def forward(self, detail: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        # detail (N, 128, H/8, W/8), semantic (N, 128, H/32, W/32)
        left = self.left1(detail) * torch.sigmoid(_nearest_up(self.right1(semantic), 4))  # (N, 128, H/8, W/8)
        right = self.left2(detail) * torch.sigmoid(self.right2(semantic))  # (N, 128, H/32, W/32)
        return self.conv(left + _nearest_up(right, 4))  # (N, 128, H/8, W/8)


class SegmentHead(nn.Module):
    """Main head: ConvBNReLU3x3 (128 -> 1024), dropout (identity at inference), 1x1 classifier with bias.

    ``conv_out`` keeps the reference's index layout (slot 0 is an Identity in the main head), so the classifier's
    keys are ``head.conv_out.1.*``.
    """

    def __init__(self, in_ch: int, mid_ch: int, num_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid_ch, 3)
        self.conv_out = nn.Sequential(nn.Identity(), nn.Conv2d(mid_ch, num_classes, 1, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNetV2(SegmentationModel):
    """BiSeNet V2 (detail + semantic branches, BGA fusion), main head only."""

    final_upsample = FinalUpsample("bilinear", align_corners=False)
    size_multiple = 32
    cpu_channels_last = True
    min_size = 32
    ignored_checkpoint_prefixes = ("aux2.", "aux3.", "aux4.", "aux5_4.")

    def __init__(self, num_classes: int = 19):
        super().__init__()
        self.num_classes = num_classes
        self.detail = DetailBranch()
        self.segment = SemanticBranch()
        self.bga = BilateralGuidedAggregation(128)
        self.head = SegmentHead(128, 1024, num_classes)

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, C, H/8, W/8)
        return self.head(self.bga(self.detail(x), self.segment(x)))


# ------------------------------------------------------------------------------------------------------- registry


# CoinCheung/BiSeNet trains on Cityscapes statistics, RGB in [0, 1].
CITYSCAPES_BISENET = Preprocessing((0.3257, 0.3690, 0.3223), (0.2112, 0.2148, 0.2115), "RGB", 1.0)


@register_model("bisenetv1", family="bisenet", classes="cityscapes", default_num_classes=19,
                output_stride=8, size_rule=_SIZE_RULE,
                checkpoint_layout="CoinCheung/BiSeNet model_final_v1_city_new.pth",
                aliases=("bisenet_v1", "bisenet"), preprocessing=CITYSCAPES_BISENET)
def bisenetv1(num_classes: int = 19) -> BiSeNetV1:
    return BiSeNetV1(num_classes)


@register_model("bisenetv2", family="bisenet", classes="cityscapes", default_num_classes=19,
                output_stride=8, size_rule=_SIZE_RULE,
                checkpoint_layout="CoinCheung/BiSeNet model_final_v2_city.pth", aliases=("bisenet_v2",),
                preprocessing=CITYSCAPES_BISENET)
def bisenetv2(num_classes: int = 19) -> BiSeNetV2:
    return BiSeNetV2(num_classes)
