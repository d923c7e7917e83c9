"""The surface every rtseg model shares.

A model computes low-resolution logits (``forward_lowres``) and declares the final upsampling it applies to them
(``final_upsample``). ``forward`` is the composition, so the full output and the deployable split
(graph up to the low-resolution logits, then the fused upsample+argmax kernel) cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RtsegError


@dataclass(frozen=True)
class FinalUpsample:
    """The upsampling a model owes its low-resolution logits: bilinear to the input size.

    ``mode`` is ``"bilinear"``, or ``"none"`` where the network's own output is already at the input size
    (learned upsampling, as in the VGG16 FCNs, stays in the graph).
    """

    mode: str = "bilinear"
    align_corners: bool = False

    def apply(self, low: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.mode == "none":
            return low
        return F.interpolate(low, size=size, mode="bilinear", align_corners=self.align_corners)

    def as_dict(self) -> dict:
        return {"mode": self.mode, "size": "input", "align_corners": self.align_corners}


class SegmentationModel(nn.Module):
    """Base class: subclasses implement ``forward_lowres`` and set the class attributes below."""

    final_upsample: FinalUpsample = FinalUpsample()
    #: input H and W must be multiples of this
    size_multiple: int = 1
    #: smallest accepted H and W
    min_size: int = 1
    #: state_dict key prefixes of the public checkpoints that the main logits do not use (aux heads, fc, ...)
    ignored_checkpoint_prefixes: tuple[str, ...] = ()
    #: input preprocessing a loaded checkpoint brings with it (e.g. DIGITS' "minus 116" Power layer), as
    #: ``{"mean", "std", "channel_order", "value_scale"}``; None: the model's default (rtseg.export.recipes)
    checkpoint_preprocessing: dict | None = None
    #: PyTorch runs this network faster on the CPU with ``channels_last`` tensors (oneDNN's NHWC convolutions;
    #: measured per family, 1.2-1.3x for the BiSeNets and Fast-SCNN, slower for ICNet and FCN-AlexNet). The export's
    #: PyTorch reference uses it; the values are the same up to float rounding.
    cpu_channels_last: bool = False

    num_classes: int
    model_name: str = ""

    def nearest_valid_size(self, height: int, width: int) -> tuple[int, int]:
        """The smallest accepted input size at or above ``(height, width)``."""
        return _round_up(height, self.size_multiple, self.min_size), _round_up(width, self.size_multiple,
                                                                                 self.min_size)

    def check_input_size(self, height: int, width: int) -> None:
        """Raise :class:`RtsegError` for an input size the architecture cannot take."""
        m = self.size_multiple
        if height < self.min_size or width < self.min_size or height % m or width % m:
            name = self.model_name or type(self).__name__
            h, w = self.nearest_valid_size(height, width)
            raise RtsegError(
                f"{name} cannot take a {height}x{width} input: height and width must be multiples of {m}"
                f" and at least {self.min_size}; resize to e.g. {h}x{w}"
            )

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, C, h, w)
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, C, H, W)
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()):
            self.check_input_size(x.shape[-2], x.shape[-1])
        low = self.forward_lowres(x)
        return self.final_upsample.apply(low, (x.shape[-2], x.shape[-1]))


def _round_up(n: int, multiple: int, minimum: int) -> int:
    return max(minimum, -(-n // multiple) * multiple)
