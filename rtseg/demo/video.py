"""The demo video: a camera driving down one street of the world, with its ground truth frame by frame.

``render_video(folder)`` writes ``street.mp4`` (H.264, through the same writer as ``rtseg run --save``),
``labels/<index:06d>.png`` (single-channel Cityscapes train ids, the layout of ``rtseg run --save-masks``) and
``street.json`` (what was rendered). A second call with the same settings reuses the files. The world seed
belongs to no training or held-out split.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..errors import RtsegError
from .render import Camera, render
from .world import make_world

VIDEO_FILE, LABELS_DIR, INFO_FILE = "street.mp4", "labels", "street.json"


@dataclass(frozen=True)
class VideoSpec:
    frames: int = 120
    fps: float = 24.0
    height: int = 720
    width: int = 1280
    seed: int = 1  # the world; training uses seeds from 1,000,000 up
    speed: float = 9.0  # metres per second along the street
    version: int = 1  # bump when the world or the renderer changes what a frame shows


def camera_at(spec: VideoSpec, world, t: float) -> Camera:
    """The driving camera at time ``t``: the right lane, a gentle sway and a slow look around."""
    return Camera(s=30.0 + spec.speed * t, x=world.road_half * 0.45 + 0.25 * math.sin(0.5 * t), height=1.45,
                  focal=0.8, horizon=0.46 + 0.01 * math.sin(0.9 * t), yaw=0.03 * math.sin(0.35 * t))


def frame_at(spec: VideoSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``index`` of the video: ``(rgb uint8 (H, W, 3), labels uint8 (H, W))``."""
    world = _world(spec.seed)
    t = index / spec.fps
    return render(world, camera_at(spec, world, t), t, spec.height, spec.width, noise_seed=index)


_WORLDS: dict = {}


def _world(seed: int):
    if seed not in _WORLDS:
        _WORLDS[seed] = make_world(seed)
    return _WORLDS[seed]


def _frame_job(job):
    spec, index = job
    return frame_at(spec, index)


def render_video(folder: str | os.PathLike, spec: VideoSpec = VideoSpec(), workers: int = 2,
                 progress: bool = True, say=print) -> dict:
    """Render the video and its labels into ``folder`` (reused when already there); returns ``street.json``."""
    folder = Path(folder)
    info_path = folder / INFO_FILE
    wanted = asdict(spec)
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            info = {}
        labels = folder / LABELS_DIR
        if (info.get("spec") == wanted and (folder / VIDEO_FILE).is_file() and labels.is_dir()
                and len(list(labels.glob("*.png"))) == spec.frames):
            say(f"  video      {folder / VIDEO_FILE}  reused ({spec.frames} frames)")
            return info

    import cv2
    from tqdm import tqdm

    from ..video.sinks import VideoFileSink

    folder.mkdir(parents=True, exist_ok=True)
    tmp_labels = folder / f".{LABELS_DIR}.partial"
    shutil.rmtree(tmp_labels, ignore_errors=True)
    tmp_labels.mkdir()
    sink = VideoFileSink(folder / VIDEO_FILE, spec.fps)
    counts = np.zeros(256, np.int64)
    jobs = [(spec, i) for i in range(spec.frames)]
    bar = tqdm(total=spec.frames, desc="render street video", unit="frame", disable=not progress, leave=False)
    try:
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as ex:
                for i, (rgb, labels) in enumerate(ex.map(_frame_job, jobs, chunksize=4)):
                    _write(sink, cv2, tmp_labels, i, rgb, labels, counts)
                    bar.update()
        else:
            for i, job in enumerate(jobs):
                _write(sink, cv2, tmp_labels, i, *_frame_job(job), counts)
                bar.update()
    except BaseException:
        sink.close()
        (folder / VIDEO_FILE).unlink(missing_ok=True)
        shutil.rmtree(tmp_labels, ignore_errors=True)
        raise
    finally:
        bar.close()
    written = sink.close()
    if written.get("frames") != spec.frames:
        raise RtsegError(f"the street video has {written.get('frames')} frames, not {spec.frames}")
    shutil.rmtree(folder / LABELS_DIR, ignore_errors=True)
    os.replace(tmp_labels, folder / LABELS_DIR)
    info = {"spec": wanted, "video": VIDEO_FILE, "labels": LABELS_DIR, "codec": written.get("codec"),
            "class_pixels": {str(k): int(v) for k, v in enumerate(counts) if v}}
    tmp = info_path.with_name(info_path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, info_path)
    say(f"  video      {folder / VIDEO_FILE}  rendered ({spec.frames} frames, {spec.width}x{spec.height})")
    return info


def _write(sink, cv2, labels_dir: Path, index: int, rgb, labels, counts) -> None:
    sink.write(SimpleNamespace(overlay=None, frame=np.ascontiguousarray(rgb[..., ::-1])))
    if not cv2.imwrite(str(labels_dir / f"{index:06d}.png"), labels):
        raise RtsegError(f"cannot write {labels_dir / f'{index:06d}.png'}; is the disk full?")
    counts += np.bincount(labels.reshape(-1), minlength=256)
