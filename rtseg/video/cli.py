"""``rtseg run BUNDLE --source SRC``: streaming segmentation into a window, an mp4, mask PNGs or a browser view."""

from __future__ import annotations

import argparse
import sys

from ..errors import RtsegError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", nargs="?", help="a bundle folder written by rtseg export (not with --remote)")
    parser.add_argument("--source", required=True, action="append",
                        help="a video file, an image, a folder or glob of images, a webcam index (0) or an "
                             "rtsp://, rtmp:// or http(s):// URL; repeat it for several streams into one model"
                             " (their frames are batched together; each stream's --save/--save-masks/--stats get"
                             " a _N suffix or a N/ subfolder)")
    parser.add_argument("--remote", metavar="URL",
                        help="send the segment stage to an rtseg serve service (http://HOST:PORT) instead of"
                             " loading a bundle here")
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
    from .pipeline import SourceFailed, run_pipeline
    from .sinks import gui_missing_reason
    from .sources import open_source

    if not 0.0 <= args.alpha <= 1.0:
        raise RtsegError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.max_frames is not None and args.max_frames < 1:
        raise RtsegError(f"--max-frames must be at least 1, got {args.max_frames}")
    if args.show and (reason := gui_missing_reason()):
        raise RtsegError(reason)
    if (args.bundle is None) == (args.remote is None):
        raise RtsegError("pass a BUNDLE to segment here, or --remote URL of an rtseg serve service (not both)")
    if len(args.source) > 1:
        return _run_streams(args)
    source = open_source(args.source[0], live=args.live, vid_stride=args.vid_stride)
    try:
        seg = _open_segmenter(args)
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


def _open_segmenter(args):
    if args.remote:
        from ..serve.client import RemoteSegmenter  # standard-library HTTP only: no Ray on the client

        return RemoteSegmenter(args.remote)
    from ..runtime import load

    return load(args.bundle, backend=args.backend, device=args.device)


def _run_streams(args: argparse.Namespace) -> int:
    """Several --source values into one segmenter, each stream with its own sinks and stats."""
    from pathlib import Path

    from .streams import run_streams

    if args.show or args.serve:
        raise RtsegError("--show and --serve take one --source; run one rtseg run per stream to watch them")

    def per_stream(path, k, folder=False):
        if not path:
            return None
        p = Path(path)
        return str(p / str(k)) if folder else str(p.with_name(f"{p.stem}_{k}{p.suffix}"))

    outputs = [{"save": per_stream(args.save, k), "save_masks": per_stream(args.save_masks, k, folder=True),
                "stats": per_stream(args.stats, k), "colour_masks": args.colour_masks}
               for k in range(len(args.source))]
    with _open_segmenter(args) as seg:
        summaries = run_streams(seg, args.source, outputs, live=args.live, vid_stride=args.vid_stride,
                                alpha=args.alpha, max_frames=args.max_frames)
    for k, summary in enumerate(summaries):
        print(f"stream {k}: {args.source[k]}")
        _print_summary(summary)
    return 0


def _print_summary(summary) -> None:
    for line in summary.lines():
        print(line)
    for name, out in summary.outputs.items():
        if out.get("path"):
            print(f"{name}: {out['path']} ({out.get('frames', 0)} frames)")
    sys.stdout.flush()

