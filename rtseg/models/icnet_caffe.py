"""ICNet as converted from the official Caffe models by meetps/pytorch-semseg (``ptsemseg/models/icnet.py``).

Exact to meetps/pytorch-semseg@801fb200547c in eval mode, for its two checkpoint families: ``icnetBN_*`` (convs
without bias, each followed by BatchNorm) and ``icnet_*`` (BN folded into conv biases). Both store the state_dict
under ``ckpt['model_state']``, sometimes with ``module.`` prefixes; :func:`rtseg.models.load_checkpoint` unwraps
both. The released weights expect BGR, Caffe-mean-subtracted, unscaled (0..255) pixels.

The network, all of it Caffe-flavoured:

* sizes follow Caffe's Interp layer: shrinking by ``s`` gives ``(n-1)/s+1``, zooming by ``z`` gives ``(n-1)*z+1``,
  and every resize is bilinear with ``align_corners=True``;
* a half-width ResNet-50 (stem 32-32-64, stages of 128/256/512/1024 channels, dilation 2 and 4 in the last two)
  is cut in two: the 1/2-scale image runs up to the first block of stage 3 (sub2, 1/16 of the input), which is
  shrunk once more to feed the rest of the network (sub4, 1/32);
* the pyramid pooling runs with the fixed Caffe pooling windows the models were trained with (made for a 33x65
  map) and sums, not concatenates; it has no weights in eval mode;
* a 3-conv branch on the full image (sub1, 1/8) and two cascade feature fusion (CFF) units merge the branches;
  the classifier runs on the fused map zoomed to 1/4 of the input.

Training-only parts are not built: the CFF ``low_classifier_conv`` heads and the pyramid pooling's 1x1 conv
paths, whose checkpoint keys are skipped on load. The reference forward also runs ``res_block3_identity`` a
second time on the sub4 output and discards the result; that dead call is left out.

Accepted input sizes (see :meth:`ICNetCaffe.check_input_size`): height ``32k+1`` >= 1025 and width ``32k+1`` >=
2049. Only for ``32k+1`` do the three branches meet at matching sizes *and* the reference's final ``(n-1)*4+1``
zoom land on the input size; the fixed pooling windows need the 1/32 map to be at least 33x65.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..bundle.preprocessing import Preprocessing
from ..errors import RtsegError
from .base import FinalUpsample, SegmentationModel
from .registry import register_model

# Eval-mode pyramid pooling of the Caffe ICNet, for bins 6, 3, 2, 1 in this order: Caffe's (kernel, stride) for a
# 33x65 map. The order also fixes the order of the float sum.
_CAFFE_POOLS = (((8, 15), (5, 10)), ((13, 25), (10, 20)), ((17, 33), (16, 32)), ((33, 65), (33, 65)))

_STRIDE = 32  # input H-1 and W-1 must be multiples of this
_MIN_HEIGHT = 32 * (_CAFFE_POOLS[-1][0][0] - 1) + 1  # 1025: the 1/32 map must fit the largest pooling window
_MIN_WIDTH = 32 * (_CAFFE_POOLS[-1][0][1] - 1) + 1  # 2049


def _shrink(x: torch.Tensor, s: int) -> torch.Tensor:
    """Caffe Interp shrink: ``n -> (n-1)/s + 1`` (truncated), bilinear, align_corners=True."""
    h, w = x.shape[-2:]
    return F.interpolate(x, size=((h - 1) // s + 1, (w - 1) // s + 1), mode="bilinear", align_corners=True)


def _zoom(x: torch.Tensor, z: int) -> torch.Tensor:
    """Caffe Interp zoom: ``n -> (n-1)*z + 1``, bilinear, align_corners=True."""
    h, w = x.shape[-2:]
    return F.interpolate(x, size=((h - 1) * z + 1, (w - 1) * z + 1), mode="bilinear", align_corners=True)


def _conv(cin: int, cout: int, k: int, stride: int, padding: int, dilation: int, batchnorm: bool) -> list[nn.Module]:
    """The conv (+BN) pair: bias only where BN was folded into it."""
    conv = nn.Conv2d(cin, cout, k, stride, padding, dilation, bias=not batchnorm)
    return [conv, nn.BatchNorm2d(cout)] if batchnorm else [conv]


class ConvBNReLU(nn.Module):
    """Conv (+BN) + ReLU; keys ``cbr_unit.0`` (conv) and ``cbr_unit.1`` (BN, when there is one)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                 batchnorm: bool = True):
        super().__init__()
        self.cbr_unit = nn.Sequential(*_conv(cin, cout, k, stride, padding, dilation, batchnorm),
                                      nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cbr_unit(x)


class ConvBN(nn.Module):
    """Conv (+BN) without activation; keys ``cb_unit.0`` and ``cb_unit.1``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                 batchnorm: bool = True):
        super().__init__()
        self.cb_unit = nn.Sequential(*_conv(cin, cout, k, stride, padding, dilation, batchnorm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cb_unit(x)


class Bottleneck(nn.Module):
    """PSPNet bottleneck (ResNet v1.5: stride on the 3x3): ``relu(cb3(cbr2(cbr1(x))) + shortcut)``.

    The first block of a stage projects the shortcut with ``cb4`` (1x1 with the stride); the others add ``x``.
    """

    def __init__(self, cin: int, mid: int, cout: int, stride: int, dilation: int, project: bool, batchnorm: bool):
        super().__init__()
        self.cbr1 = ConvBNReLU(cin, mid, 1, batchnorm=batchnorm)
        self.cbr2 = ConvBNReLU(mid, mid, 3, stride, dilation, dilation, batchnorm=batchnorm)
        self.cb3 = ConvBN(mid, cout, 1, batchnorm=batchnorm)
        self.cb4 = ConvBN(cin, cout, 1, stride, batchnorm=batchnorm) if project else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.cb3(self.cbr2(self.cbr1(x)))
        out += x if self.cb4 is None else self.cb4(x)
        return out.relu_()


class ResidualStage(nn.Module):
    """A run of bottlenecks under ``layers.<i>``: the projecting first block, the identity ones, or both.

    ptsemseg splits stage 3 in two modules (``res_block3_conv`` holds the first block, ``res_block3_identity``
    the rest) so that the sub4 shrink can sit between them. A dilated stage has stride 1.
    """

    def __init__(self, n_blocks: int, cin: int, mid: int, cout: int, stride: int = 1, dilation: int = 1,
                 part: str = "all", batchnorm: bool = True):
        super().__init__()
        if dilation > 1:
            stride = 1
        blocks = []
        if part in ("all", "conv"):
            blocks.append(Bottleneck(cin, mid, cout, stride, dilation, True, batchnorm))
        if part in ("all", "identity"):
            blocks += [Bottleneck(cout, mid, cout, 1, dilation, False, batchnorm) for _ in range(n_blocks - 1)]
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class CascadeFeatureFusion(nn.Module):
    """CFF: ``relu(BN(dilated 3x3(zoom2(low))) + BN(1x1(high)))``.

    The training-only ``low_classifier_conv`` head (on the zoomed low input) is not built.
    """

    def __init__(self, low_channels: int, high_channels: int, out_channels: int, batchnorm: bool):
        super().__init__()
        self.low_dilated_conv_bn = ConvBN(low_channels, out_channels, 3, 1, 2, 2, batchnorm=batchnorm)
        self.high_proj_conv_bn = ConvBN(high_channels, out_channels, 1, batchnorm=batchnorm)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:  # (N,Cl,h,w), (N,Ch,2h-1,2w-1)
        out = self.low_dilated_conv_bn(_zoom(low, 2))  # (N, Co, 2h-1, 2w-1)
        out += self.high_proj_conv_bn(high)
        return out.relu_()


def caffe_pyramid_pooling(x: torch.Tensor) -> torch.Tensor:
    """ICNet's eval-mode pyramid pooling: ``x`` plus each fixed-window average, zoomed back to ``x``'s size.

    The windows are Caffe's for a 33x65 map (bins 6, 3, 2, 1); a larger map gets more cells per level, as in the
    reference. Weight-free: the checkpoint's ``pyramid_pooling.path_module_list`` convs are never applied.
    """
    size = x.shape[-2:]
    out = x
    for kernel, stride in _CAFFE_POOLS:
        pooled = F.avg_pool2d(x, kernel, stride)  # (N, C, (h-kh)/sh+1, (w-kw)/sw+1)
        out = out + F.interpolate(pooled, size=size, mode="bilinear", align_corners=True)
    return out


class ICNetCaffe(SegmentationModel):
    """ICNet of meetps/pytorch-semseg, eval mode. ``forward_lowres`` returns the 1/4 logits.

    The reference zooms those ``(8k+1)x(8j+1)`` logits by ``(n-1)*4+1`` with ``align_corners=True``; at the accepted
    sizes ``32k+1`` that target is the input size, so ``final_upsample`` (bilinear, ``align_corners=True``, to the
    input size) is the same call and ``forward`` equals the reference bit for bit.

    Static shapes only (``dynamic_shapes_supported = False``): the Caffe pooling windows are fixed numbers, so an
    exported graph is valid only for the size it was traced at (the 1025x2049 the weights were trained for).
    """

    final_upsample = FinalUpsample("bilinear", align_corners=True)
    # The base class's "multiple of m, at least min_size" rule does not fit (H-1 and W-1 must be multiples of 32,
    # and the height and width minima differ): check_input_size and nearest_valid_size are overridden.
    size_multiple = _STRIDE
    min_size = _MIN_HEIGHT
    dynamic_shapes_supported = False
    ignored_checkpoint_prefixes = (
        "pyramid_pooling.path_module_list.",
        "cff_sub24.low_classifier_conv.",
        "cff_sub12.low_classifier_conv.",
    )

    def __init__(self, num_classes: int = 19, batchnorm: bool = True, block_config=(3, 4, 6, 3)):
        super().__init__()
        self.num_classes = num_classes
        bn = batchnorm
        # sub2 / sub4: the half-width ResNet-50
        self.convbnrelu1_1 = ConvBNReLU(3, 32, 3, 2, 1, batchnorm=bn)
        self.convbnrelu1_2 = ConvBNReLU(32, 32, 3, 1, 1, batchnorm=bn)
        self.convbnrelu1_3 = ConvBNReLU(32, 64, 3, 1, 1, batchnorm=bn)
        self.res_block2 = ResidualStage(block_config[0], 64, 32, 128, batchnorm=bn)
        self.res_block3_conv = ResidualStage(block_config[1], 128, 64, 256, 2, part="conv", batchnorm=bn)
        self.res_block3_identity = ResidualStage(block_config[1], 128, 64, 256, 2, part="identity", batchnorm=bn)
        self.res_block4 = ResidualStage(block_config[2], 256, 128, 512, 1, 2, batchnorm=bn)
        self.res_block5 = ResidualStage(block_config[3], 512, 256, 1024, 1, 4, batchnorm=bn)
        self.conv5_4_k1 = ConvBNReLU(1024, 256, 1, batchnorm=bn)
        # sub1: three stride-2 convs on the full image
        self.convbnrelu1_sub1 = ConvBNReLU(3, 32, 3, 2, 1, batchnorm=bn)
        self.convbnrelu2_sub1 = ConvBNReLU(32, 32, 3, 2, 1, batchnorm=bn)
        self.convbnrelu3_sub1 = ConvBNReLU(32, 64, 3, 2, 1, batchnorm=bn)
        # fusion and head
        self.cff_sub24 = CascadeFeatureFusion(256, 256, 128, bn)
        self.cff_sub12 = CascadeFeatureFusion(128, 64, 128, bn)
        self.classification = nn.Conv2d(128, num_classes, 1)

    def check_input_size(self, height: int, width: int) -> None:
        """Accept height ``32k+1`` >= 1025 and width ``32k+1`` >= 2049, else raise :class:`RtsegError`.

        With ``H = 32k+1`` the branches meet exactly (sub2 ``2k+1`` zooms onto itself from sub4 ``k+1``, and on
        sub1 ``4k+1``), and the reference's final zoom ``(8k+1 - 1)*4 + 1`` gives back ``H``, so the reference's
        output is the input size. Other sizes either crash in the reference (mismatched branch sizes, a map
        smaller than the fixed 33x65 pooling window) or give an output that is not the input size.
        """
        if _valid(height, _MIN_HEIGHT) and _valid(width, _MIN_WIDTH):
            return
        name = self.model_name or type(self).__name__
        h, w = self.nearest_valid_size(height, width)
        raise RtsegError(
            f"{name} cannot take a {height}x{width} input: height and width must be 32k+1 (e.g. 1025, 1057),"
            f" at least {_MIN_HEIGHT}x{_MIN_WIDTH} (the Caffe ICNet's fixed pooling windows); resize to e.g. {h}x{w}"
        )

    def nearest_valid_size(self, height: int, width: int) -> tuple[int, int]:
        """The smallest accepted size at or above ``(height, width)``: each side rounded up to ``32k+1``."""
        return _valid_up(height, _MIN_HEIGHT), _valid_up(width, _MIN_WIDTH)

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 32k+1, 32j+1) -> (N, C, 8k+1, 8j+1)
        # sub2: the 1/2 image through the stem and stages 2, 3a
        sub2 = _shrink(x, 2)  # (N, 3, 16k+1, 16j+1)
        sub2 = self.convbnrelu1_3(self.convbnrelu1_2(self.convbnrelu1_1(sub2)))  # (N, 64, 8k+1, 8j+1)
        sub2 = F.max_pool2d(sub2, 3, 2, 1)  # (N, 64, 4k+1, 4j+1)
        sub2 = self.res_block3_conv(self.res_block2(sub2))  # (N, 256, 2k+1, 2j+1)
        # sub4: shrunk once more, stages 3b, 4, 5, pyramid pooling
        sub4 = self.res_block3_identity(_shrink(sub2, 2))  # (N, 256, k+1, j+1)
        sub4 = self.res_block5(self.res_block4(sub4))  # (N, 1024, k+1, j+1)
        sub4 = self.conv5_4_k1(caffe_pyramid_pooling(sub4))  # (N, 256, k+1, j+1)
        # sub1: the full image, 1/8
        sub1 = self.convbnrelu3_sub1(self.convbnrelu2_sub1(self.convbnrelu1_sub1(x)))  # (N, 64, 4k+1, 4j+1)
        fused = self.cff_sub12(self.cff_sub24(sub4, sub2), sub1)  # (N, 128, 4k+1, 4j+1)
        return self.classification(_zoom(fused, 2))  # (N, C, 8k+1, 8j+1)


def _valid(n: int, minimum: int) -> bool:
    return n >= minimum and (n - 1) % _STRIDE == 0


def _valid_up(n: int, minimum: int) -> int:
    """The smallest accepted size >= n."""
    return max(minimum, -(-(n - 1) // _STRIDE) * _STRIDE + 1)


_SIZE_RULE = "H, W = 32k+1, at least 1025x2049"
# meetps/pytorch-semseg ICNet (converted Caffe weights): BGR, raw 0..255 minus the Pascal mean, no std.
PASCAL_BGR = Preprocessing((103.939, 116.779, 123.68), (1.0, 1.0, 1.0), "BGR", 255.0)


@register_model("icnet_ptsemseg_bn", family="icnet", classes="cityscapes", default_num_classes=19,
                output_stride=4, size_rule=_SIZE_RULE,
                checkpoint_layout="meetps/pytorch-semseg icnetBN_cityscapes_*.pth ['model_state']",
                aliases=("icnet_caffe_bn", "icnetbn_ptsemseg", "icnetbn_caffe"), preprocessing=PASCAL_BGR)
def icnet_ptsemseg_bn(num_classes: int = 19) -> ICNetCaffe:
    """The Caffe ICNet with BatchNorm layers ('icnetBN' checkpoints)."""
    return ICNetCaffe(num_classes, batchnorm=True)


@register_model("icnet_ptsemseg_nobn", family="icnet", classes="cityscapes", default_num_classes=19, output_stride=4,
                size_rule=_SIZE_RULE,
                checkpoint_layout="meetps/pytorch-semseg icnet_cityscapes_*.pth ['model_state'] (BN folded)",
                aliases=("icnet_caffe", "icnet_caffe_nobn"), preprocessing=PASCAL_BGR)
def icnet_ptsemseg_nobn(num_classes: int = 19) -> ICNetCaffe:
    """The Caffe ICNet with BN folded into the conv biases ('icnet' checkpoints)."""
    return ICNetCaffe(num_classes, batchnorm=False)
