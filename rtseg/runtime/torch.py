"""PyTorch backend: the zoo model and its checkpoint, eager, on the CPU or a GPU (FP16 on CUDA).

The model is rebuilt from what the bundle's manifest records (name, class count, the checkpoint and its sha256),
so it computes the same function as the exported graphs: the low-resolution logits when the bundle's output is
``logits`` (the upsample owed is done by the runtime's kernel, as for the other backends), labels otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RtsegError, require
from .base import Runner


def import_torch():
    return require("torch", "export")


class TorchRunner(Runner):
    """``model`` is a zoo name; ``checkpoint`` its weights (None: the untrained seed-0 weights rtseg export used)."""

    backend = "torch"

    def __init__(self, model: str, num_classes: int, checkpoint: str | Path | None = None, head: str = "logits",
                 device: str = "cpu", half: bool | None = None, stream: Any = None):
        super().__init__(device)
        self.model_name, self.num_classes, self.checkpoint, self.head = model, num_classes, checkpoint, head
        self.half = self.on_gpu if half is None else bool(half)
        self._torch_stream = stream
        self.model = None

    def activate_impl(self) -> None:
        torch = import_torch()
        from ..models import create_model

        if self.on_gpu and not torch.cuda.is_available():
            raise RtsegError(f"device {self.device} was asked for, but this PyTorch ({torch.__version__}) sees no"
                             " CUDA GPU; use device='cpu'")
        if self.checkpoint is None:
            with torch.random.fork_rng():  # the same untrained weights rtseg export wrote
                torch.manual_seed(0)
                model = create_model(self.model_name, num_classes=self.num_classes)
        else:
            model = create_model(self.model_name, num_classes=self.num_classes, checkpoint=self.checkpoint)
        model = model.eval().to(self.device)
        if self.half:
            model = model.half()
        self.model = model
        self.input_dtype = np.dtype(np.float16 if self.half else np.float32)
        self.provider = f"torch {torch.__version__} {'fp16' if self.half else 'fp32'} {self.device}"
        if self.on_gpu:
            self._torch_stream = self._torch_stream or torch.cuda.Stream(device=self.device)
            self.stream = int(self._torch_stream.cuda_stream)

    def infer_impl(self, x: Any) -> Any:
        torch = import_torch()
        with torch.inference_mode():
            if self.on_gpu:
                with torch.cuda.stream(self._torch_stream):
                    return self._forward(torch.as_tensor(x, device=self.device))
            return self._forward(torch.from_numpy(np.ascontiguousarray(x, dtype=self.input_dtype))).numpy()

    def _forward(self, t):
        torch = import_torch()
        t = t.to(torch.float16 if self.half else torch.float32)
        if self.head == "logits":
            return self.model.forward_lowres(t)  # (N, C, h, w); the kernels read float16 logits as they are
        return self.model(t).argmax(dim=1).to(torch.int32)  # (N, H, W)

    def deactivate_impl(self) -> None:
        self.model = None

    def max_batch(self) -> int | None:
        return None  # PyTorch eager takes any batch

    def describe(self) -> dict:
        info = super().describe()
        info.update(graph=f"{self.model_name} (PyTorch eager)")
        return info

