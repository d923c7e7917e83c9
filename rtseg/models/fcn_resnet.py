"""torchvision's FCN-ResNet50/101: a dilated ResNet (output stride 8) and a small FCN head.

Exact to ``torchvision.models.segmentation.fcn_resnet{50,101}`` and its ``COCO_WITH_VOC_LABELS_V1`` checkpoints:
keys ``backbone.*`` (torchvision's ResNet layout without ``fc``) and ``classifier.{0,1,4}``. The checkpoints also
hold the training-time ``aux_classifier`` head on layer3; the main logits do not use it, so it is not built and its
keys are skipped when loading.

Input size: none of the strided layers (7x7/2 stem conv, 3x3/2 max pool, layer2's 3x3/2 conv) can shrink a map
below one pixel, and the logits are resized to the input size, so any input of at least 1x1 works.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import FinalUpsample, SegmentationModel
from .registry import register_model
from .resnet import ResNet, resnet50, resnet101

_SIZE_RULE = "any H, W >= 1"  # logits at ceil(H/8) x ceil(W/8), resized to the input


class FCNHead(nn.Sequential):
    """3x3 conv (no bias) -> BN -> ReLU -> Dropout -> 1x1 conv, at a quarter of the input channels.

    A Sequential so that the keys are ``{0,1,4}.*`` as in torchvision; dropout is the identity in inference.
    """

    def __init__(self, in_channels: int, num_classes: int):
        mid = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv2d(mid, num_classes, 1),
        )


class FCNResNet(SegmentationModel):
    """Dilated ResNet (layer3/layer4 dilated 2/4 instead of strided) + FCNHead on layer4, bilinear to the input."""

    final_upsample = FinalUpsample("bilinear", align_corners=False)
    size_multiple = 1
    min_size = 1
    ignored_checkpoint_prefixes = ("aux_classifier.",)

    def __init__(self, backbone: ResNet, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        self.classifier = FCNHead(backbone.channels[-1], num_classes)

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, C, ceil(H/8), ceil(W/8))
        features = self.backbone(x)[-1]  # (N, 2048, ceil(H/8), ceil(W/8))
        return self.classifier(features)


_DILATE = (False, True, True)  # torchvision's replace_stride_with_dilation: output stride 8
_LAYOUT = "torchvision FCN_ResNet{}_Weights.COCO_WITH_VOC_LABELS_V1 ({}; aux_classifier skipped)"


@register_model("fcn_resnet50_tv", family="fcn", classes="voc", default_num_classes=21, output_stride=8,
                size_rule=_SIZE_RULE, checkpoint_layout=_LAYOUT.format(50, "fcn_resnet50_coco-1167a1af.pth"),
                aliases=("fcn_resnet50", "fcn_r50"))
def fcn_resnet50_tv(num_classes: int = 21) -> FCNResNet:
    return FCNResNet(resnet50(dilate=_DILATE), num_classes)


@register_model("fcn_resnet101_tv", family="fcn", classes="voc", default_num_classes=21, output_stride=8,
                size_rule=_SIZE_RULE, checkpoint_layout=_LAYOUT.format(101, "fcn_resnet101_coco-7ecb50ca.pth"),
                aliases=("fcn_resnet101", "fcn_r101"))
def fcn_resnet101_tv(num_classes: int = 21) -> FCNResNet:
    return FCNResNet(resnet101(dilate=_DILATE), num_classes)
