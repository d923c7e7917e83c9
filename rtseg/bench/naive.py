"""The naive baseline: the per-frame loop a user writes by hand, so every figure has a ratio beside it.

Resize with OpenCV and normalise in NumPy, run the PyTorch model eagerly (its forward upsamples to the input
size), ``F.interpolate`` the logits to the frame's size, ``argmax``, and blend the palette in NumPy. Same model,
same weights as the bundle (its checkpoint, or the untrained seed-0 weights rtseg export used).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..bundle import Manifest
from ..errors import RtsegError


class NaiveBaseline:
    def __init__(self, manifest: Manifest, bundle_root: Path, input_size: tuple[int, int], device: str = "cpu",
                 alpha: float = 0.5):
        from ..runtime.torch import import_torch

        torch = import_torch()
        from ..models import create_model

        model_info = manifest.model
        if model_info.family == "onnx":
            raise RtsegError("the bundle was made from an ONNX file; there is no PyTorch model for the naive row")
        weights = model_info.source.get("weights")
        checkpoint = None
        if weights:
            checkpoint = Path(weights) if Path(weights).is_file() else bundle_root / weights
            if not checkpoint.is_file():
                raise RtsegError(f"the naive row needs the checkpoint {weights}, which is not here; pass --no-naive")
        with torch.random.fork_rng():
            torch.manual_seed(0)  # the untrained weights rtseg export wrote, when there is no checkpoint
            model = create_model(model_info.name, num_classes=model_info.num_classes, checkpoint=checkpoint)
        self.torch, self.device = torch, torch.device(device)
        self.model = model.eval().to(self.device)
        pre = manifest.preprocessing
        self.size = tuple(input_size)  # (h, w)
        self.rgb = pre.channel_order == "RGB"
        self.scale = np.float32(pre.value_scale / 255.0)
        self.mean = np.asarray(pre.mean, np.float32)
        self.std = np.asarray(pre.std, np.float32)
        self.palette_bgr = np.asarray(model_info.palette, np.uint8)[:, ::-1].astype(np.float32)
        self.alpha = alpha

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """BGR uint8 frame -> (blended BGR uint8 frame, stage seconds)."""
        import cv2
        import torch.nn.functional as F

        torch = self.torch
        t0 = time.perf_counter()
        x = cv2.resize(frame, self.size[::-1], interpolation=cv2.INTER_LINEAR)  # (h, w, 3) BGR
        if self.rgb:
            x = x[..., ::-1]
        x = (x.astype(np.float32) * self.scale - self.mean) / self.std
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))[None]).to(self.device)  # (1, 3, h, w)
        t1 = time.perf_counter()
        with torch.inference_mode():
            logits = self.model(t)  # (1, C, h, w)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            t2 = time.perf_counter()
            up = F.interpolate(logits, size=frame.shape[:2], mode="bilinear", align_corners=False)  # (1, C, H, W)
            labels = up.argmax(dim=1)[0].cpu().numpy()  # (H, W)
        t3 = time.perf_counter()
        blended = (frame * (1 - self.alpha) + self.palette_bgr[labels] * self.alpha).astype(np.uint8)
        t4 = time.perf_counter()
        return blended, {"preprocess": t1 - t0, "infer": t2 - t1, "postprocess": t3 - t2, "overlay": t4 - t3}
