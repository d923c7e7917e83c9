"""Rebuild the reference checkpoints from ../shared/fixtures/reference: the fill rule and the input rule."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import torch

# Where each reference repository nests its state_dict when it saves a checkpoint.
CHECKPOINT_NESTING = {"icnet_ptsemseg_bn": "model_state", "icnet_ptsemseg_nobn": "model_state"}


def fill(key: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """The fixtures' deterministic weight-fill rule (README 'Fill rule')."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    if key.endswith("num_batches_tracked"):
        v = np.zeros(shape)
    elif key.endswith("running_var"):
        v = 1 + 0.1 * rng.random(shape)
    elif key.endswith("running_mean"):
        v = 0.1 * rng.standard_normal(shape)
    elif len(shape) <= 1 and key.endswith("weight"):
        v = 1 + 0.1 * rng.standard_normal(shape)
    elif key.endswith("bias"):
        v = 0.1 * rng.standard_normal(shape)
    else:
        v = rng.standard_normal(shape) * math.sqrt(2 / math.prod(shape[1:]))
    return v.astype(np.int64 if "int64" in dtype else np.float32)


def manifest(ref_dir: Path, stem: str) -> dict:
    return json.loads((ref_dir / f"{stem}.manifest.json").read_text())


def reference_state_dict(man: dict) -> dict[str, torch.Tensor]:
    return {e["key"]: torch.from_numpy(fill(e["key"], tuple(e["shape"]), e["dtype"]))
            for e in man["state_dict"]}


def save_reference_checkpoint(man: dict, path: Path) -> Path:
    """Save the filled weights the way the reference repository saves its checkpoints."""
    state = reference_state_dict(man)
    nest = CHECKPOINT_NESTING.get(man["name"])
    torch.save({nest: state, "epoch": 1} if nest else state, path)
    return path


def reference_input(man: dict) -> torch.Tensor:
    shape = tuple(man["input"]["shape"])
    return torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))


def reference_views(ref_dir: Path, stem: str, logits: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ours, reference) array pairs: the whole logits, or the crop/strided views the large fixtures store."""
    data = np.load(ref_dir / f"{stem}.npz")
    ours = logits.detach().numpy()
    if "logits" in data:
        return [(ours, data["logits"])]
    return [(ours[0, :, 449:577, 897:1153], data["logits_crop"]), (ours[0, :, 3::8, 5::8], data["logits_strided"])]
