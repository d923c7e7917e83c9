"""FCN-AlexNet (voc-fcn-alexnet of the FCN paper), the model of NVIDIA DIGITS' semantic-segmentation tutorial.

A convolutionalised CaffeNet: there is no PyTorch reference, so this file is written from the Caffe net
(shelhamer/fcn.berkeleyvision.org ``voc-fcn-alexnet``) and checked against OpenCV's Caffe importer. Its
checkpoints are Caffe files (``fcn-alexnet-pascal.caffemodel``, DIGITS' ``fcn_alexnet.caffemodel``), read by
:mod:`rtseg.models.caffe`; the state_dict keys are the Caffe layer names (``conv1.weight``, ``fc6.bias``, ...).

What this file reproduces:

* CaffeNet order, pooling *before* LRN: conv1 -> ReLU -> pool1 -> norm1 -> conv2 -> ReLU -> pool2 -> norm2 -> ...
* conv1 pads by 100 and every max pool (3x3, stride 2) rounds up, so fc6, a 6x6 convolution without padding,
  always has an output pixel and the final crop always falls inside: any input of at least 1x1 works and the
  output is exactly the input size.
* conv2, conv4 and conv5 are grouped (2 groups), the two-GPU split of the original AlexNet.
* LRN across 5 channels, y = x / (1 + alpha/5 * sum x^2)^0.75: Caffe divides alpha by the window size, as
  ``F.local_response_norm`` does, so alpha is passed unchanged.
* upscore is a full C x C transposed convolution (kernel 63, stride 32, no bias), then a crop at offset 18. The
  released kernel is bilinear on the diagonal, but it stays a learned layer in the graph, as in the VGG FCNs.

DIGITS' variant names its last layers ``score_fr_21classes`` / ``upscore_21classes`` and makes upscore a
per-class (group C) deconvolution, weight (C, 1, 63, 63). :meth:`FCNAlexNet.adapt_checkpoint` recognises that
layout, renames it and puts each class's kernel on the diagonal of the full one, which computes the same thing.
DIGITS' deploy net also subtracts 116 from the raw BGR pixels (a Power layer): that shift is recorded as the
model's input preprocessing (``checkpoint_preprocessing``), not folded into conv1.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RtsegError
from .base import FinalUpsample, SegmentationModel
from .fcn import CAFFE_VGG_BGR, bilinear_kernel
from .registry import register_model

UPSCORE_KERNEL, UPSCORE_STRIDE, CROP_OFFSET = 63, 32, 18
# DIGITS' deploy net: data_preprocessed = data - 116 on raw BGR pixels in 0..255.
DIGITS_PREPROCESSING = {"mean": (116.0, 116.0, 116.0), "std": (1.0, 1.0, 1.0), "channel_order": "BGR",
                        "value_scale": 255.0}
_DIGITS_LAYER = re.compile(r"^(score_fr|upscore)_(\d+)classes\.(weight|bias)$")


class FCNAlexNet(SegmentationModel):
    """voc-fcn-alexnet: CaffeNet trunk, fc6/fc7 as convolutions, score_fr, a x32 deconvolution and a crop of 18."""

    final_upsample = FinalUpsample("none")  # the learned deconvolution stays in the graph
    size_multiple = 1
    min_size = 1

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(3, 96, 11, stride=4, padding=100)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1, groups=2)
        self.fc6 = nn.Conv2d(256, 4096, 6)  # the ImageNet InnerProduct (4096, 256*6*6), reshaped
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.score_fr = nn.Conv2d(4096, num_classes, 1)
        self.upscore = nn.ConvTranspose2d(num_classes, num_classes, UPSCORE_KERNEL, UPSCORE_STRIDE, bias=False)
        with torch.no_grad():
            self.upscore.weight.copy_(bilinear_kernel(num_classes, UPSCORE_KERNEL))

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, C, H, W)
        h = _pool_norm(F.relu(self.conv1(x)))  # (N, 96, h1, w1) with h1 = ceil((ceil((H + 189) / 4) - 3) / 2) + 1
        h = _pool_norm(F.relu(self.conv2(h)))  # (N, 256, ~h1 / 2, ~w1 / 2)
        h = F.relu(self.conv3(h))
        h = F.relu(self.conv4(h))
        h = F.max_pool2d(F.relu(self.conv5(h)), 3, 2, ceil_mode=True)  # pool5: (N, 256, about (H + 198) / 32)
        h = F.relu(self.fc6(h))  # dropout is the identity in inference
        h = F.relu(self.fc7(h))
        up = self.upscore(self.score_fr(h))  # (N, C, 32 * (h6 - 1) + 63, ...): at least H + 18
        return up[:, :, CROP_OFFSET:CROP_OFFSET + x.shape[-2], CROP_OFFSET:CROP_OFFSET + x.shape[-1]]

    def adapt_checkpoint(self, state: dict) -> dict:
        """Bring DIGITS' layout (``*_<C>classes`` layers, a group-C upscore) to this model's keys.

        The per-class kernels (C, 1, k, k) go on the diagonal of the full (C, C, k, k) kernel: off-diagonal zeros
        add nothing, so the full transposed convolution computes exactly the grouped one. Other checkpoints pass
        through unchanged.
        """
        renamed = {}
        for key, value in state.items():
            match = _DIGITS_LAYER.match(key)
            renamed[f"{match[1]}.{match[3]}" if match else key] = value
        if len(renamed) != len(state):
            raise RtsegError("checkpoint holds both FCN-AlexNet's and DIGITS' names for score_fr/upscore;"
                             " keep one set of layers")
        if renamed.keys() == state.keys():
            return state
        weight = renamed.get("upscore.weight")
        if weight is not None and weight.dim() == 4 and weight.shape[1] == 1 and weight.shape[0] > 1:
            full = weight.new_zeros(weight.shape[0], weight.shape[0], *weight.shape[2:])  # (C, C, k, k)
            index = torch.arange(weight.shape[0])
            full[index, index] = weight[:, 0]
            renamed["upscore.weight"] = full
        if self.checkpoint_preprocessing is None:
            self.checkpoint_preprocessing = dict(DIGITS_PREPROCESSING)
        return renamed


def _pool_norm(h: torch.Tensor) -> torch.Tensor:
    """CaffeNet's pool-then-LRN pair: 3x3/2 max pool rounding up, then Caffe's cross-channel LRN."""
    h = F.max_pool2d(h, 3, 2, ceil_mode=True)
    return F.local_response_norm(h, 5, alpha=1e-4, beta=0.75, k=1.0)


@register_model("fcn_alexnet", family="fcn", classes="voc", default_num_classes=21, output_stride=1,
                size_rule="any H, W >= 1",
                checkpoint_layout="Caffe fcn-alexnet-pascal.caffemodel or DIGITS fcn_alexnet.caffemodel"
                                  " (or a state_dict with the Caffe layer names)",
                aliases=("fcn_alexnet_voc", "voc_fcn_alexnet", "fcnalexnet"),
                # the FCN data layer's BGR VOC mean on raw 0..255 pixels (the VGG FCNs' too). DIGITS' variant
                # subtracts 116 instead; its checkpoint says so (FCNAlexNet.checkpoint_preprocessing), which wins.
                preprocessing=CAFFE_VGG_BGR)
def fcn_alexnet(num_classes: int = 21) -> FCNAlexNet:
    return FCNAlexNet(num_classes)
