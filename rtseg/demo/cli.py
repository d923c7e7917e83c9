"""``rtseg demo``: the shipped street model on the street video, end to end, with one summary at the end."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/demo"),
                   help="folder for the video, bundle, overlay, masks and demo.json (default: %(default)s)")
    p.add_argument("--backend", default="auto", help="auto, onnxruntime, torch or tensorrt (default: %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the backend's choice)")
    from ..video.cli import SERVE_PORT, add_frame_limit, add_serve_arguments

    p.add_argument("--serve", nargs="?", const=SERVE_PORT, default=None, metavar="[HOST:]PORT",
                   help=f"also show the run in a browser (port {SERVE_PORT} if none is given, on 127.0.0.1)")
    add_serve_arguments(p)
    add_frame_limit(p, "frames of street video to render and run (default: 120)", "--frames")
    p.add_argument("--video-size", default=None, metavar="HxW", help="street video size (default 720x1280)")
    p.add_argument("--bench-frames", type=int, default=30, help="frames per bench tier; 0 skips the bench"
                   " (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..errors import RtsegError
    from ..sizes import read_size
    from ..video.cli import serve_options
    from .run import DemoOptions, run_demo
    from .summary import next_steps, summary_lines
    from .video import VideoSpec

    spec = VideoSpec()
    if args.max_frames is not None:
        if args.max_frames < 1:
            raise RtsegError(f"--max-frames must be at least 1, got {args.max_frames}")
        spec = replace(spec, frames=args.max_frames)
    if args.video_size is not None:
        h, w = read_size(args.video_size, "--video-size")
        if h < 32 or w < 32:
            raise RtsegError(f"--video-size {args.video_size}: height and width must be at least 32")
        spec = replace(spec, height=h, width=w)
    if args.bench_frames < 0:
        raise RtsegError(f"--bench-frames must be 0 or more, got {args.bench_frames}")
    # a busy port or a bad token now, not after the rendering and the export; the URL with its token is said once
    serve = serve_options(args, say=lambda line: print(f"  {line.removeprefix('rtseg: ')}", flush=True),
                          tokened_only=True)
    opts = DemoOptions(out=args.out, backend=args.backend, device=args.device, serve=serve, video=spec,
                       bench_frames=args.bench_frames)
    result = run_demo(opts)
    print("\n".join(summary_lines(result) + next_steps(result)), flush=True)
    return 0
