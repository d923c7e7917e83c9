"""Face-parsing BiSeNet, exact to zllrunning/face-parsing.PyTorch and its trained CelebAMask-HQ ``79999_iter.pth``.

The network is BiSeNet V1 (ResNet-18 context path, the same ARMs and heads as :mod:`rtseg.models.bisenet`, whose
blocks are reused here) with four differences from CoinCheung's layout:

- no spatial path: the ResNet's own 1/8 map (``layer2``, 128 channels) is fused with the context path instead;
- the fusion module's attention is squeeze-and-excitation shaped: ``ffm.conv1`` (256 -> 64, 1x1), ReLU,
  ``ffm.conv2`` (64 -> 256, 1x1), sigmoid; no BN, no biases (CoinCheung: one 1x1 ``ffm.conv`` + ``ffm.bn``);
- the classifier ``conv_out.conv_out`` has no bias;
- the logits are upsampled bilinearly with ``align_corners=True`` (here the model's ``final_upsample``).

The checkpoint is a plain state_dict of the training model, so it carries the auxiliary heads ``conv_out16`` and
``conv_out32``; they are not built and their keys are skipped. The reference interpolates its top-down path to the
next map's size where CoinCheung's upsamples by nearest x2: the same thing when H and W are multiples of 32, the
size rule here (as for ``bisenetv1``).

Labels, palette and input normalisation of the checkpoint are the module constants below: 19 CelebAMask-HQ
classes (:data:`rtseg.bundle.classes.CELEBAMASK`) in the order of the reference's ``face_dataset.py`` (``atts``
enumerated from 1, background 0), and ImageNet mean/std on RGB in [0, 1] (``transforms.ToTensor`` + ``Normalize``
in its ``test.py``/``face_dataset.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..bundle.classes import CELEBAMASK_NAMES, CELEBAMASK_PALETTE
from ..bundle.preprocessing import Preprocessing
from .base import FinalUpsample
from .bisenet import _SIZE_RULE, BiSeNetV1, ContextPath, ConvBNReLU, OutputHead, _nearest_up
from .registry import register_model

#: the checkpoint's label order and palette: the CelebAMask-HQ class set of the bundle layer (defined there once)
FACEPARSING_CLASSES = CELEBAMASK_NAMES
FACEPARSING_PALETTE = CELEBAMASK_PALETTE
#: the input the checkpoint was trained on: RGB scaled to [0, 1], then ImageNet mean/std
FACEPARSING_MEAN = (0.485, 0.456, 0.406)
FACEPARSING_STD = (0.229, 0.224, 0.225)
FACEPARSING_CHANNEL_ORDER = "RGB"
FACEPARSING_VALUE_SCALE = 1.0


class FaceContextPath(ContextPath):
    """CoinCheung's context path that also hands on the ResNet's 1/8 map (it stands in for the spatial path)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, feat8, feat16, feat32 = self.resnet(x)  # (N, 128, H/8, W/8), (N, 256, H/16, ...), (N, 512, H/32, ...)
        up = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))  # global context, (N, 128, 1, 1)
        for feat, arm, head in ((feat32, self.arm32, self.conv_head32), (feat16, self.arm16, self.conv_head16)):
            up = head(_nearest_up(arm(feat) + up, 2))  # (N, 128, H/16, W/16), then (N, 128, H/8, W/8)
        return feat8, up


class SqueezeExciteFusion(nn.Module):
    """FFM: fuse = ConvBNReLU1x1(cat[res 1/8, context]); fuse * sigmoid(conv2(relu(conv1(mean fuse)))) + fuse."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_ch, out_ch, 1)
        self.conv1 = nn.Conv2d(out_ch, out_ch // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_ch // 4, out_ch, 1, bias=False)

    def forward(self, detail: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([detail, context], dim=1))  # (N, 256, H/8, W/8)
        pooled = feat.mean(dim=(2, 3), keepdim=True)  # (N, 256, 1, 1)
        return feat * torch.sigmoid(self.conv2(F.relu(self.conv1(pooled)))) + feat


class BiSeNetFaceParsing(BiSeNetV1):
    """zllrunning's face-parsing BiSeNet: BiSeNet V1 without a spatial path, main head only.

    Inherits V1's size rule, CPU layout and skipped aux-head prefixes (the same ``conv_out16.``/``conv_out32.``), not
    its modules: ``__init__`` builds its own.
    """

    final_upsample = FinalUpsample("bilinear", align_corners=True)

    def __init__(self, num_classes: int = 19):
        nn.Module.__init__(self)  # not BiSeNetV1.__init__: it builds a spatial path and CoinCheung's FFM
        self.num_classes = num_classes
        self.cp = FaceContextPath()
        self.ffm = SqueezeExciteFusion(256, 256)
        self.conv_out = OutputHead(256, 256, num_classes)
        self.conv_out.conv_out = nn.Conv2d(256, num_classes, 1, bias=False)

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, C, H/8, W/8)
        feat8, context8 = self.cp(x)
        return self.conv_out(self.ffm(feat8, context8))


# A family of its own, not "bisenet": another dataset (CelebAMask-HQ faces) and another normalisation (ImageNet
# statistics, FACEPARSING_MEAN/STD, where CoinCheung's checkpoints expect Cityscapes ones).
@register_model("bisenetv1_faceparsing", family="faceparsing", default_num_classes=len(FACEPARSING_CLASSES),
                output_stride=8, size_rule=_SIZE_RULE,
                checkpoint_layout="zllrunning/face-parsing.PyTorch 79999_iter.pth (CelebAMask-HQ)",
                aliases=("faceparsing", "face_parsing", "bisenet_faceparsing"), classes="celebamask",
                preprocessing=Preprocessing(FACEPARSING_MEAN, FACEPARSING_STD, FACEPARSING_CHANNEL_ORDER,
                                            FACEPARSING_VALUE_SCALE))
def bisenetv1_faceparsing(num_classes: int = 19) -> BiSeNetFaceParsing:
    return BiSeNetFaceParsing(num_classes)
