"""FCN-32s, FCN-16s and FCN-8s on VGG16 (Long, Shelhamer & Darrell), exact to wkentaro/pytorch-fcn.

The released checkpoints (``fcn32s_from_caffe.pth``, ``fcn16s_from_caffe.pth``, ``fcn8s_from_caffe.pth``,
``fcn8s-atonce_from_caffe.pth``) are plain state_dicts converted from the Caffe models, with top-level keys
``conv1_1`` ... ``conv5_3``, ``fc6``, ``fc7``, ``score_fr``, ``score_pool{3,4}`` and ``upscore*``: the Caffe layer
names, so the original ``.caffemodel`` files load too (:mod:`rtseg.models.caffe`).

What makes these networks unusual, and what this file reproduces:

* conv1_1 pads by 100 pixels and every max pool rounds up (``ceil_mode``), so fc6, a 7x7 convolution without
  padding, always has at least one output pixel and the fixed crops below always fall inside the map. Hence any
  input of at least 1x1 works and the output is exactly the input size: no size constraint.
* Upsampling is learned: full ``C x C`` transposed convolutions (kernel 2s, stride s, no bias, no padding),
  followed by crops at fixed offsets (19 for FCN-32s; 5 then 27 for FCN-16s; 5, 9 then 31 for FCN-8s) that
  undo the 100-pixel padding. The released kernels are bilinear, but nothing stops a fine-tuned checkpoint from
  holding others, and even bilinear kernels with these crops are not an ``F.interpolate`` resize (other sampling
  phase, zeros instead of edge replication at the borders). So the upsampling stays in the graph:
  ``final_upsample`` is ``"none"`` and ``forward_lowres`` already returns input-size logits.
* FCN-8s "at once" (trained in one stage) has FCN-8s's keys but scales the skip inputs, pool4 by 0.01 and pool3 by
  0.0001, before scoring them. The keys cannot tell the two apart: the model name must.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..bundle.preprocessing import Preprocessing
from ..errors import RtsegError
from .base import FinalUpsample, SegmentationModel
from .registry import register_model

# (output channels, number of 3x3 convs) of VGG16's five stages; conv{stage}_{i} in the checkpoint.
_VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
_SIZE_RULE = "any H, W >= 1"  # 100-pixel padding and ceil-mode pools; the output is cropped to the input size


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """The Caffe FCN upsampling weight: a bilinear filter on the diagonal of a (C, C, k, k) kernel.

    With stride ``k // 2`` the transposed convolution then interpolates each channel on its own, as the released
    checkpoints do (their deconvolutions were frozen at this value during training).
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 else factor - 0.5
    taps = 1 - (torch.arange(kernel_size, dtype=torch.float64) - center).abs() / factor  # (k,)
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64)
    index = torch.arange(channels)
    weight[index, index] = torch.outer(taps, taps)  # (k, k) on each (c, c)
    return weight.float()


def _crop(t: torch.Tensor, offset: int, height, width) -> torch.Tensor:
    """The reference's fixed-offset crop: ``t[..., offset:offset + height, offset:offset + width]``."""
    return t[:, :, offset:offset + height, offset:offset + width]


class FCNVGG16(SegmentationModel):
    """The VGG16 trunk shared by FCN-32s/16s/8s, with the checkpoint's flat key names.

    Subclasses add their score and deconvolution layers and implement ``forward_lowres``, which returns logits at
    the input size (see the module docstring for why the learned upsampling is not the final upsample).
    """

    final_upsample = FinalUpsample("none")
    size_multiple = 1
    min_size = 1

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self._conv_names: list[list[str]] = []
        in_channels = 3
        for stage, (width, depth) in enumerate(_VGG16_STAGES, start=1):
            names = []
            for i in range(1, depth + 1):
                # Padding 100 on the very first conv lets fc6 (7x7, unpadded) see even a 1x1 input.
                pad = 100 if (stage, i) == (1, 1) else 1
                setattr(self, f"conv{stage}_{i}", nn.Conv2d(in_channels, width, 3, padding=pad))
                names.append(f"conv{stage}_{i}")
                in_channels = width
            self._conv_names.append(names)
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.score_fr = nn.Conv2d(4096, num_classes, 1)

    def _deconv(self, kernel_size: int, stride: int) -> nn.ConvTranspose2d:
        """A bias-free C x C transposed convolution, initialised bilinear as the reference does."""
        deconv = nn.ConvTranspose2d(self.num_classes, self.num_classes, kernel_size, stride, bias=False)
        with torch.no_grad():
            deconv.weight.copy_(bilinear_kernel(self.num_classes, kernel_size))
        return deconv

    def trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """VGG16 up to score_fr: returns (pool3, pool4, scores at 1/32), sizes relative to the 100-padded input.

        (N, 3, H, W) -> (N, 256, h3, w3), (N, 512, h4, w4), (N, C, h5 - 6, w5 - 6) with h_s = ceil((H + 198) / 2^s).
        """
        pools = []
        h = x
        for names in self._conv_names:
            for name in names:
                h = F.relu(getattr(self, name)(h))
            h = F.max_pool2d(h, 2, 2, ceil_mode=True)  # ceil: sizes are ceil(n / 2)
            pools.append(h)
        h = F.relu(self.fc6(pools[-1]))  # dropout is the identity in inference
        h = F.relu(self.fc7(h))
        return pools[2], pools[3], self.score_fr(h)


class FCN32s(FCNVGG16):
    """FCN-32s: scores at 1/32, one x32 deconvolution, crop 19."""

    def __init__(self, num_classes: int):
        super().__init__(num_classes)
        self.upscore = self._deconv(64, 32)

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, C, H, W)
        _, _, score = self.trunk(x)
        return _crop(self.upscore(score), 19, x.shape[-2], x.shape[-1])


class FCN16s(FCNVGG16):
    """FCN-16s: x2 deconvolution plus the pool4 skip (crop 5), then a x16 deconvolution, crop 27."""

    def __init__(self, num_classes: int):
        super().__init__(num_classes)
        self.score_pool4 = nn.Conv2d(512, num_classes, 1)
        self.upscore2 = self._deconv(4, 2)
        self.upscore16 = self._deconv(32, 16)

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, C, H, W)
        _, pool4, score = self.trunk(x)
        up = self.upscore2(score)  # (N, C, 2*h5 - 10, 2*w5 - 10): about H/16 + 2
        up = up + _crop(self.score_pool4(pool4), 5, up.shape[-2], up.shape[-1])
        return _crop(self.upscore16(up), 27, x.shape[-2], x.shape[-1])


class FCN8s(FCNVGG16):
    """FCN-8s: skips from pool4 (crop 5) and pool3 (crop 9), then a x8 deconvolution, crop 31.

    ``pool4_scale`` / ``pool3_scale`` multiply the skip inputs before scoring them: 1 for FCN-8s, 0.01 / 0.0001 for
    FCN-8s at-once, whose single-stage training needed the skips damped.
    """

    def __init__(self, num_classes: int, pool4_scale: float = 1.0, pool3_scale: float = 1.0):
        super().__init__(num_classes)
        self.pool4_scale = pool4_scale
        self.pool3_scale = pool3_scale
        self.score_pool3 = nn.Conv2d(256, num_classes, 1)
        self.score_pool4 = nn.Conv2d(512, num_classes, 1)
        self.upscore2 = self._deconv(4, 2)
        self.upscore8 = self._deconv(16, 8)
        self.upscore_pool4 = self._deconv(4, 2)

    def adapt_checkpoint(self, state: dict) -> dict:
        """Check and drop the at-once Caffe file's ``scale_pool4``/``scale_pool3`` (frozen constant Scale layers).

        wkentaro's .pth files leave them out; the Caffe file keeps them, which tells the two forms apart, so a
        checkpoint whose scales differ from this model's is an error rather than silently wrong logits.
        """
        if not any(k.startswith(("scale_pool4.", "scale_pool3.")) for k in state):
            return state
        state = dict(state)
        for layer, expected in (("scale_pool4", self.pool4_scale), ("scale_pool3", self.pool3_scale)):
            blob = state.pop(f"{layer}.weight", None)
            if blob is not None and not torch.allclose(blob.double(), torch.tensor(expected, dtype=torch.float64),
                                                       rtol=1e-5, atol=0):
                name = getattr(self, "model_name", "") or type(self).__name__
                found = f"{float(blob.flatten()[0]):g}"
                hint = "fcn8s_atonce_vgg16" if expected == 1.0 else "fcn8s_vgg16"
                raise RtsegError(f"checkpoint scales {layer[6:]} by {found} but {name} by {expected:g}:"
                                 f" use --model {hint}")
        return state

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, C, H, W)
        pool3, pool4, score = self.trunk(x)
        if self.pool4_scale != 1.0:
            pool4 = pool4 * self.pool4_scale
        if self.pool3_scale != 1.0:
            pool3 = pool3 * self.pool3_scale
        up = self.upscore2(score)  # (N, C, 2*h5 - 10, 2*w5 - 10): about H/16 + 2
        up = up + _crop(self.score_pool4(pool4), 5, up.shape[-2], up.shape[-1])
        up = self.upscore_pool4(up)  # (N, C, 4*h5 - 18, 4*w5 - 18): about H/8 + 7
        up = up + _crop(self.score_pool3(pool3), 9, up.shape[-2], up.shape[-1])
        return _crop(self.upscore8(up), 31, x.shape[-2], x.shape[-1])


_LAYOUT = "wkentaro/pytorch-fcn {} (plain state_dict, converted from Caffe)"


# wkentaro/pytorch-fcn (Caffe weights): BGR, raw 0..255 minus the VGG mean, no std.
CAFFE_VGG_BGR = Preprocessing((104.00698793, 116.66876762, 122.67891434), (1.0, 1.0, 1.0), "BGR", 255.0)


@register_model("fcn32s_vgg16", family="fcn", classes="voc", default_num_classes=21,
                output_stride=1, size_rule=_SIZE_RULE,
                checkpoint_layout=_LAYOUT.format("fcn32s_from_caffe.pth"), aliases=("fcn32s", "fcn32s_vgg"),
                preprocessing=CAFFE_VGG_BGR)
def fcn32s_vgg16(num_classes: int = 21) -> FCN32s:
    return FCN32s(num_classes)


@register_model("fcn16s_vgg16", family="fcn", classes="voc", default_num_classes=21,
                output_stride=1, size_rule=_SIZE_RULE,
                checkpoint_layout=_LAYOUT.format("fcn16s_from_caffe.pth"), aliases=("fcn16s", "fcn16s_vgg"),
                preprocessing=CAFFE_VGG_BGR)
def fcn16s_vgg16(num_classes: int = 21) -> FCN16s:
    return FCN16s(num_classes)


@register_model("fcn8s_vgg16", family="fcn", classes="voc", default_num_classes=21,
                output_stride=1, size_rule=_SIZE_RULE,
                checkpoint_layout=_LAYOUT.format("fcn8s_from_caffe.pth"), aliases=("fcn8s", "fcn8s_vgg"),
                preprocessing=CAFFE_VGG_BGR)
def fcn8s_vgg16(num_classes: int = 21) -> FCN8s:
    return FCN8s(num_classes)


@register_model("fcn8s_atonce_vgg16", family="fcn", classes="voc", default_num_classes=21,
                output_stride=1, size_rule=_SIZE_RULE,
                checkpoint_layout=_LAYOUT.format("fcn8s-atonce_from_caffe.pth"),
                aliases=("fcn8s_atonce", "fcn8s_at_once", "fcn8s_at_once_vgg16"),
                preprocessing=CAFFE_VGG_BGR)
def fcn8s_atonce_vgg16(num_classes: int = 21) -> FCN8s:
    return FCN8s(num_classes, pool4_scale=0.01, pool3_scale=0.0001)
