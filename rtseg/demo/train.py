"""Train the shipped street model: ``python -m rtseg.demo.train``.

Fast-SCNN (``rtseg.models.create_model("fast_scnn", num_classes=19)``) learns the street world on a CPU in about
half an hour: a pool of labelled frames is rendered once (each from its own world and camera), then the network
trains on random batches of it with flips and light jitter, cross-entropy weighted towards rare classes (people,
cars), AdamW with warm-up and cosine decay. The schedule runs over ``--steps`` or ``--minutes``, whichever ends
first, so a fixed ``--steps`` with ``--minutes 0`` reproduces a run exactly (same seed, same frames, same batches).

At the end the weights are stored as float16 (a plain state_dict, read back with ``torch.load(weights_only=True)``
through rtseg's checkpoint loader) and the model *as stored* is scored on held-out frames rendered at 720p: input
resized to the network's size, logits upsampled to 720p, as the runtime does. The figures go next to the weights in
a JSON file. ``--eval-only`` scores existing weights (held-out frames and the demo video) without training.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import RtsegError
from ..sizes import read_size
from .data import iou_scores, labelled_frame
from .world import NUM_CLASSES

WEIGHTS = Path(__file__).resolve().parent / "weights" / "fast_scnn_street.pth"
INPUT_SIZE = (288, 512)  # 16:9, multiples of 32: the network's input for a 720p video


@dataclass
class TrainConfig:
    steps: int = 4000
    minutes: float = 30.0  # wall-time budget; 0 = no limit (the schedule runs over steps only)
    batch: int = 8
    size: tuple[int, int] = INPUT_SIZE
    crop: tuple[int, int] = (160, 288)  # random crops of the pool frames: a third of the pixels per sample
    pool: int = 800  # labelled frames rendered once before training
    pool_start: int = 0  # index of the first training frame (a fine-tuning run can take new frames)
    max_scale: float = 1.8  # pool frames are rendered at 1..max_scale times ``size``, then resized
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    # One thread: on the shared 2-core machine two threads ran a step 5-10 times slower than one (they spin at
    # every barrier while the other core is taken); raise it on a machine of your own.
    threads: int = 1
    workers: int = 2  # processes rendering the pool
    val_frames: int = 40  # held-out frames scored at the end, rendered at val_size
    val_size: tuple[int, int] = (720, 1280)
    eval_every: int = 250
    out: Path = WEIGHTS
    init: Path | None = None  # start from these weights instead of from scratch (a second, fine-tuning run)


def build_pool(count: int, size: tuple[int, int], split: str, workers: int, desc: str, progress: bool = True,
               render_size=None, start: int = 0, max_scale: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """Labelled frames ``start .. start + count`` of ``split``: ``(rgb (N, H, W, 3) uint8, labels (N, H, W))``."""
    from tqdm import tqdm

    jobs = [(split, start + i, size, max_scale, render_size) for i in range(count)]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as ex:
            frames = list(tqdm(ex.map(_frame_job, jobs, chunksize=8), total=count, desc=desc, disable=not progress))
    else:
        frames = [_frame_job(j) for j in tqdm(jobs, desc=desc, disable=not progress)]
    return np.stack([f[0] for f in frames]), np.stack([f[1] for f in frames])


def _frame_job(job):
    split, index, size, max_scale, render_size = job
    return labelled_frame(split, index, size, max_scale, render_size)


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Cross-entropy weights: (median frequency / frequency) ** 0.5, clipped to [0.5, 5]; 1 for absent classes."""
    counts = np.bincount(labels.reshape(-1), minlength=256)[:NUM_CLASSES].astype(np.float64)
    present = counts > 0
    freq = counts / counts.sum()
    weights = np.ones(NUM_CLASSES)
    weights[present] = np.clip(np.sqrt(np.median(freq[present]) / freq[present]), 0.5, 5.0)
    return weights.astype(np.float32)


def augment(rgb: np.ndarray, labels: np.ndarray, rng: np.random.Generator, crop: tuple[int, int] | None = None):
    """Random crops, flips, light and colour jitter, now and then a slight blur; labels follow crops and flips."""
    import cv2

    ch, cw = crop or rgb.shape[1:3]
    out = np.empty((len(rgb), ch, cw, 3), np.float32)
    lab = np.empty((len(rgb), ch, cw), labels.dtype)
    for i in range(len(rgb)):
        y0 = int(rng.integers(0, rgb.shape[1] - ch + 1))
        x0 = int(rng.integers(0, rgb.shape[2] - cw + 1))
        img, lab[i] = rgb[i, y0:y0 + ch, x0:x0 + cw], labels[i, y0:y0 + ch, x0:x0 + cw]
        if rng.random() < 0.3:
            img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.0)))
        img = img.astype(np.float32) * np.float32(rng.uniform(0.75, 1.25)) * rng.uniform(0.92, 1.08, 3).astype(
            np.float32) + np.float32(rng.uniform(-12, 12))
        if rng.random() < 0.5:
            img, lab[i] = img[:, ::-1], lab[i, :, ::-1]
        out[i] = img
    return np.clip(out, 0, 255), lab


def to_input(rgb: np.ndarray):
    """uint8/float RGB ``(N, H, W, 3)`` -> the bundle's normalised input tensor ``(N, 3, H, W)``."""
    import torch

    from ..bundle import Preprocessing

    pre = Preprocessing()
    x = rgb.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def lr_at(progress: float, peak: float, warmup: float = 0.03) -> float:
    """Linear warm-up over the first ``warmup`` of the run, then cosine decay to 2% of the peak."""
    if progress < warmup:
        return peak * (0.05 + 0.95 * progress / warmup)
    p = (progress - warmup) / (1 - warmup)
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


def train(cfg: TrainConfig, progress: bool = True, log=print) -> dict:
    """Train, store the float16 weights at ``cfg.out`` and return the figures (also written next to them)."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from ..models import create_model

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()
    previous = None
    if cfg.init is not None:  # a fine-tuning run keeps the record of the run it starts from
        try:
            previous = json.loads(Path(cfg.init).with_suffix(".json").read_text())
        except (OSError, ValueError):
            previous = None
    rgb_pool, lab_pool = build_pool(cfg.pool, cfg.size, "train", cfg.workers, "render train frames", progress,
                                    start=cfg.pool_start, max_scale=cfg.max_scale)
    if cfg.eval_every:  # a few held-out frames to follow progress on
        val_rgb, val_lab = build_pool(16, cfg.size, "val", cfg.workers, "render val frames", progress)
    render_s = time.perf_counter() - t_start
    weights = torch.from_numpy(class_weights(lab_pool))
    model = create_model("fast_scnn", num_classes=NUM_CLASSES, checkpoint=cfg.init).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng([cfg.seed, 31])
    budget = cfg.minutes * 60.0
    t_train = time.perf_counter()
    losses, history = [], []
    bar = tqdm(total=cfg.steps, desc="train fast_scnn", disable=not progress, mininterval=5.0)
    step = 0
    while step < cfg.steps:
        elapsed = time.perf_counter() - t_train
        frac = max(step / cfg.steps, elapsed / budget if budget > 0 else 0.0)
        if frac >= 1.0:
            break
        lr = lr_at(frac, cfg.lr)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = rng.integers(len(rgb_pool), size=cfg.batch)
        x, y = augment(rgb_pool[idx], lab_pool[idx], rng, cfg.crop)
        logits = model(to_input(x))  # (B, K, H, W)
        loss = F.cross_entropy(logits, torch.from_numpy(y.astype(np.int64)), weight=weights, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{lr:.2e}")
        if cfg.eval_every and (step % cfg.eval_every == 0):
            miou = evaluate(model, val_rgb, val_lab)[0]
            model.train()
            history.append({"step": step, "loss": float(np.mean(losses[-50:])), "val_miou": miou,
                            "minutes": (time.perf_counter() - t_train) / 60})
            log(f"step {step}: loss {history[-1]['loss']:.4f}  val mIoU {miou:.4f}  lr {lr:.2e}"
                f"  {history[-1]['minutes']:.1f} min")
    bar.close()
    train_s = time.perf_counter() - t_train

    state = save_weights(model, cfg.out)
    shipped = create_model("fast_scnn", num_classes=NUM_CLASSES, checkpoint=cfg.out)  # the model as stored
    result = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
              "command": " ".join([Path(sys.executable).name, "-m", "rtseg.demo.train", *sys.argv[1:]]),
              "steps": step, "render_seconds": round(render_s, 1), "train_seconds": round(train_s, 1),
              "first_losses": losses[:5], "last_loss": float(np.mean(losses[-50:])) if losses else None,
              "history": history, "weights_bytes": cfg.out.stat().st_size, "tensors": len(state)}
    if cfg.val_frames:
        result["held_out"] = score_held_out(shipped, cfg.val_frames, cfg.size, cfg.val_size, cfg.workers, progress)
        log(f"held-out mIoU {result['held_out']['miou']:.4f} on {cfg.val_frames} frames at "
            f"{cfg.val_size[0]}x{cfg.val_size[1]}")
    if previous is not None:
        result["previous_run"] = previous
    write_figures(cfg.out, result)
    return result


def save_weights(model, path: Path) -> dict:
    """The state_dict with float tensors in float16, written atomically; returns what was saved."""
    import torch

    state = {k: (v.detach().half() if v.is_floating_point() else v.detach()).clone()
             for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return state


def write_figures(weights: Path, figures: dict) -> Path:
    path = weights.with_suffix(".json")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(figures, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def predict(model, rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Labels ``(N, H, W)`` for uint8 RGB frames ``(N, H, W, 3)``, each resized to the network's ``size`` and the
    logits upsampled back to the frame, as the runtime does."""
    import cv2
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for frame in rgb:
            h, w = frame.shape[:2]
            small = frame if size is None or (h, w) == tuple(size) else cv2.resize(
                frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
            low = model.forward_lowres(to_input(small[None]))
            logits = model.final_upsample.apply(low, (h, w))
            out.append(logits.argmax(1)[0].numpy().astype(np.uint8))
    return np.stack(out)


def evaluate(model, rgb: np.ndarray, labels: np.ndarray, size=None) -> tuple[float, dict]:
    """mIoU and per-class IoU of ``model`` on labelled frames (``rtseg eval``'s confusion matrix)."""
    from ..eval.metrics import ConfusionMatrix

    cm = ConfusionMatrix(NUM_CLASSES)
    for i in range(len(rgb)):
        cm.update(labels[i], predict(model, rgb[i:i + 1], size)[0])
    return iou_scores(cm)


def score_held_out(model, count: int, size, render_size, workers: int, progress: bool = True) -> dict:
    """mIoU on ``count`` held-out frames rendered at ``render_size`` (the network sees them resized to ``size``)."""
    from ..eval.metrics import ConfusionMatrix

    cm = ConfusionMatrix(NUM_CLASSES)
    chunk = 8
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        rgb, lab = build_pool(n, size, "val", workers, "score held-out", False, render_size, start)
        for i in range(n):
            cm.update(lab[i], predict(model, rgb[i:i + 1], size)[0])
    miou, per_class = iou_scores(cm)
    return {"frames": count, "frame_size": list(render_size), "input_size": list(size), "miou": miou,
            "per_class_iou": per_class}


def score_video(model, size, frames: int | None = None, progress: bool = True) -> dict:
    """mIoU on the demo video's frames (720p, rendered in memory) with the PyTorch model."""
    from tqdm import tqdm

    from ..eval.metrics import ConfusionMatrix
    from .video import VideoSpec, frame_at

    spec = VideoSpec()
    count = frames or spec.frames
    cm = ConfusionMatrix(NUM_CLASSES)
    for i in tqdm(range(count), desc="score demo video", disable=not progress):
        rgb, labels = frame_at(spec, i)
        cm.update(labels, predict(model, rgb[None], size)[0])
    miou, per_class = iou_scores(cm)
    return {"frames": count, "frame_size": [spec.height, spec.width], "input_size": list(size), "miou": miou,
            "per_class_iou": per_class}


def eval_only(cfg: TrainConfig, log=print) -> dict:
    """Score the weights at ``cfg.out`` on held-out frames and the demo video; add the figures to its JSON."""
    import torch

    from ..models import create_model

    torch.set_num_threads(cfg.threads)
    model = create_model("fast_scnn", num_classes=NUM_CLASSES, checkpoint=cfg.out)
    path = cfg.out.with_suffix(".json")
    figures = json.loads(path.read_text()) if path.is_file() else {}
    figures["held_out"] = score_held_out(model, cfg.val_frames, cfg.size, cfg.val_size, cfg.workers)
    figures["video"] = score_video(model, cfg.size)
    for key in ("held_out", "video"):
        log(f"{key}: mIoU {figures[key]['miou']:.4f} on {figures[key]['frames']} frames  "
            + "  ".join(f"{k} {v:.3f}" for k, v in figures[key]["per_class_iou"].items()))
    write_figures(cfg.out, figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m rtseg.demo.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--minutes", type=float, default=d.minutes, help="wall-time budget (0: none)")
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--pool", type=int, default=d.pool, help="labelled frames rendered before training")
    p.add_argument("--pool-start", type=int, default=d.pool_start, help="index of the first training frame")
    p.add_argument("--crop", type=_size, default=d.crop, help="training crop HxW (default %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--val-frames", type=int, default=d.val_frames)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--out", type=Path, default=d.out)
    p.add_argument("--init", type=Path, default=None, help="start from these weights (fine-tune) instead of scratch")
    p.add_argument("--eval-only", action="store_true",
                   help="score the weights at --out on held-out frames and the demo video, without training")
    args = p.parse_args(argv)
    cfg = TrainConfig(steps=args.steps, minutes=args.minutes, batch=args.batch, pool=args.pool, lr=args.lr,
                      crop=args.crop, init=args.init, pool_start=args.pool_start,
                      seed=args.seed, threads=args.threads, workers=args.workers, val_frames=args.val_frames,
                      eval_every=args.eval_every, out=args.out)
    if args.eval_only:
        eval_only(cfg, log=lambda line: print(line, flush=True))
        return 0
    result = train(cfg, log=lambda line: print(line, flush=True))
    print(json.dumps({k: result[k] for k in ("steps", "train_seconds", "last_loss")}), flush=True)
    return 0


def _size(text: str) -> tuple[int, int]:
    try:
        return read_size(text, "--crop")
    except RtsegError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
