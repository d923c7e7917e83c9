"""``rtseg run BUNDLE --source SRC``: streaming segmentation into a window, an mp4, mask PNGs or a browser view."""

from __future__ import annotations

import argparse
import sys

from ..errors import RtsegError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="a bundle folder written by rtseg export")
    parser.add_argument("--source", required=True,
                        help="a video file, an image, a folder or glob of images, a webcam index (0) or an "
                             "rtsp://, rtmp:// or http(s):// URL")
    parser.add_argument("--backend", default="auto", help="auto, tensorrt, onnxruntime or torch (default: auto)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: choose)")
    parser.add_argument("--show", action="store_true", help="show the overlay in a window (needs a display)")
    parser.add_argument("--save", metavar="OUT.mp4", help="write every processed frame's overlay as H.264 mp4")
    parser.add_argument("--save-masks", metavar="DIR",
                        help="write raw class-id PNGs DIR/<frame index:06d>.png (what rtseg eval reads)")
    parser.add_argument("--colour-masks", action="store_true", help="also write colour masks in DIR/colour/")
    parser.add_argument("--serve", metavar="[HOST:]PORT",
                        help="browser view over HTTP (MJPEG); binds 127.0.0.1 unless a host is given")
    parser.add_argument("--stats", metavar="STATS.jsonl", help="per-frame timings as JSON lines, summary last")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the class colours (0-1)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--live", dest="live", action="store_true", default=None,
                      help="newest frame only, drop the rest (default for webcams and URLs; a file plays at its "
                           "own frame rate)")
    mode.add_argument("--lossless", dest="live", action="store_false",
                      help="every frame in order, never drop (default for files and folders)")
    parser.add_argument("--vid-stride", type=int, default=1, metavar="N", help="segment every N-th frame")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or status line")


def run(args: argparse.Namespace) -> int:
    from ..runtime import load
    from .pipeline import SourceFailed, run_pipeline
    from .sinks import gui_missing_reason
    from .sources import open_source

    if not 0.0 <= args.alpha <= 1.0:
        raise RtsegError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.max_frames is not None and args.max_frames < 1:
        raise RtsegError(f"--max-frames must be at least 1, got {args.max_frames}")
    if args.show and (reason := gui_missing_reason()):
        raise RtsegError(reason)
    source = open_source(args.source, live=args.live, vid_stride=args.vid_stride)
    try:
        seg = load(args.bundle, backend=args.backend, device=args.device)
    except BaseException:
        source.close()
        raise

    def started(outputs: dict) -> None:
        if outputs.get("serve"):
            print(f"rtseg: browser view at {outputs['serve']}", file=sys.stderr, flush=True)

    with seg:
        d = seg.describe()
        if not args.quiet:
            print(f"rtseg: {source.name} ({'live' if source.live else 'lossless'}) -> {d['backend']} "
                  f"{d['device']}", file=sys.stderr, flush=True)
        try:
            summary = run_pipeline(seg, source, save=args.save, save_masks=args.save_masks, serve=args.serve,
                                   stats=args.stats, alpha=args.alpha, max_frames=args.max_frames,
                                   show=args.show, colour_masks=args.colour_masks, progress=not args.quiet,
                                   on_start=started)
        except SourceFailed as exc:
            if exc.summary is not None:
                _print_summary(exc.summary)
            raise
    _print_summary(summary)
    if summary.signal is not None:
        return 128 + int(summary.signal)
    return 0


def _print_summary(summary) -> None:
    for line in summary.lines():
        print(line)
    for name, out in summary.outputs.items():
        if out.get("path"):
            print(f"{name}: {out['path']} ({out.get('frames', 0)} frames)")
    sys.stdout.flush()

