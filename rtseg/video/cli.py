"""``rtseg run BUNDLE SOURCE``: streaming segmentation into a window, an mp4, mask PNGs or a browser view.

With no sink named, the overlay video is saved under ``runs/run/<N>/`` (``--out`` to choose, ``--no-save`` for
none) and the path printed, as Ultralytics does.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import RtsegError

SERVE_PORT = "8080"  # the one default port of --serve (run, demo) and rtseg serve --serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="BUNDLE SOURCE",
                        help="a bundle folder written by rtseg export (or a folder holding one, e.g. runs/demo), then"
                             " the source(s); with --remote only sources")
    parser.add_argument("--source", action="append", default=[],
                        help="a video file, an image, a folder or glob of images, a webcam index (0) or an "
                             "rtsp://, rtmp:// or http(s):// URL (the same as the positional SOURCE); repeat it for"
                             " several streams into one model (their frames are batched together; each stream's"
                             " --save/--save-masks/--stats get a _N suffix or a N/ subfolder)")
    parser.add_argument("--remote", metavar="URL",
                        help="send the segment stage to an rtseg serve service (http://HOST:PORT) instead of"
                             " loading a bundle here; one that asks for a token gets --token (or $RTSEG_TOKEN)")
    parser.add_argument("--backend", default="auto", help="auto, tensorrt, onnxruntime or torch (default: auto)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: choose)")
    from ..runtime.multiscale import add_arguments as add_multiscale_arguments

    add_multiscale_arguments(parser)
    parser.add_argument("--show", action="store_true", help="show the overlay in a window (needs a display)")
    parser.add_argument("--save", metavar="OUT.mp4", help="write every processed frame's picture as H.264 mp4"
                        " (default with no other sink: runs/run/N/<source>.mp4)")
    parser.add_argument("--save-quality", choices=("fast", "balanced", "compact"), default=None,
                        help="the H.264 encoder's preset: fast (ultrafast, the default: least CPU, bigger files),"
                        " balanced (veryfast), compact (medium: smallest files, most CPU); docs/run.md")
    parser.add_argument("--no-save", action="store_true", help="save nothing when no sink is named")
    parser.add_argument("--out", metavar="DIR", help="folder for the default save (default: runs/run/N, N one more"
                        " than the last)")
    parser.add_argument("--save-masks", metavar="DIR",
                        help="write raw class-id PNGs DIR/<frame index:06d>.png (what rtseg eval --pred reads)")
    parser.add_argument("--overwrite", action="store_true",
                        help="a --save-masks folder that holds files: clear its old masks first (else refused)")
    parser.add_argument("--colour-masks", "--color-masks", dest="colour_masks", action="store_true",
                        help="also write colour masks in DIR/colour/")
    parser.add_argument("--serve", nargs="?", const=SERVE_PORT, metavar="[HOST:]PORT",
                        help=f"browser view over HTTP (MJPEG) on port {SERVE_PORT} if none is given; binds"
                             " 127.0.0.1 unless a host is given")
    add_serve_arguments(parser, webrtc=True)
    parser.add_argument("--stats", metavar="STATS.jsonl", help="per-frame timings as JSON lines, summary last")
    parser.add_argument("--stream", metavar="rtp://HOST:PORT", help="also send the picture as H.264 over RTP; the SDP"
                        " that players open is written beside the saved video (stream.sdp without one)")
    add_picture_arguments(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--live", dest="live", action="store_true", default=None,
                      help="newest frame only, drop the rest (default for webcams and URLs; a file plays at its "
                           "own frame rate)")
    mode.add_argument("--lossless", dest="live", action="store_false",
                      help="every frame in order, never drop (default for files and folders)")
    parser.add_argument("--vid-stride", type=int, default=1, metavar="N", help="segment every N-th frame"
                        " (default: 1, every frame)")
    add_frame_limit(parser, "stop after N frames (default: the whole source)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or status line")


def add_serve_arguments(parser: argparse.ArgumentParser, webrtc: bool = False) -> None:
    """--token/--no-auth (rtseg.access's rule) and --webrtc, beside --serve."""
    parser.add_argument("--token", default=None, help="the token a --serve view bound beyond the loopback asks for"
                        " (default: $RTSEG_TOKEN, else one generated and printed once in the URL to open); on"
                        " 127.0.0.1 no token is asked unless given; with --remote, the service's token")
    parser.add_argument("--no-auth", action="store_true", help="serve beyond the loopback with no token: anyone"
                        " who reaches the address may watch (a warning says so)")
    if webrtc:
        parser.add_argument("--webrtc", action="store_true", help="with --serve: the page plays the overlay over"
                            " WebRTC (a tenth of MJPEG's bandwidth or less; MJPEG stays the fallback); needs"
                            " pip install 'rtseg[webrtc]'")


def serve_options(args: argparse.Namespace, say=None, tokened_only: bool = False):
    """--serve/--token/--no-auth/--webrtc -> rtseg.video.server.ServeOptions (None without --serve), checked now
    (a busy port, a bad token, aiortc missing: before the model loads). ``say(line)`` gets the URL with the token
    and the access notice once the view listens (``tokened_only``: only when there is a token or a notice)."""
    webrtc = getattr(args, "webrtc", False)
    if args.serve is None:
        view_token = args.token is not None and not getattr(args, "remote", None)  # --remote sends its --token
        if webrtc or view_token or args.no_auth:
            flag = "--webrtc" if webrtc else "--token" if view_token else "--no-auth"
            raise RtsegError(f"{flag} applies to the browser view: add --serve [[HOST:]PORT]")
        return None
    from ..access import with_token
    from .server import prepare

    options = prepare(args.serve, args.token, args.no_auth, webrtc)
    grant = options.grant
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))

    def on_listen(url: str) -> None:
        if grant.token or not tokened_only:
            say(f"rtseg: browser view at {with_token(url, grant.token)}")
        if grant.notice:
            say(f"rtseg: {grant.notice}")

    options.on_listen = on_listen
    return options


def add_frame_limit(parser: argparse.ArgumentParser, help_text: str, *aliases: str, default=None) -> None:
    """``--max-frames N``: the one frame-limit flag of run, bench, eval and demo (older names kept as aliases)."""
    parser.add_argument("--max-frames", *aliases, dest="max_frames", type=int, default=default, metavar="N",
                        help=help_text)


def add_picture_arguments(parser: argparse.ArgumentParser) -> None:
    """What the mp4, the window and the browser view show."""
    from .legend import DEFAULT_ALPHA, VISUALIZE

    parser.add_argument("--visualize", default="overlay", choices=VISUALIZE,
                        help="overlay (classes blended in), mask (colour mask) or side (original | overlay)"
                             " (default: overlay)")
    parser.add_argument("--legend", action=argparse.BooleanOptionalAction, default=True,
                        help="draw the class legend into saved and shown pictures (default: on)")
    parser.add_argument("--ignore-class", action="append", default=[], metavar="NAME",
                        help="leave this class undrawn (e.g. road); repeat for several")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help=f"overlay opacity of the class colours, 0-1 (default: {DEFAULT_ALPHA})")


def _split_paths(args: argparse.Namespace) -> None:
    """``BUNDLE SOURCE...`` (or only sources with --remote) and --source into args.bundle and args.source."""
    from pathlib import Path

    paths = list(args.paths)
    if args.remote and paths and (Path(paths[0]) / "rtseg.json").is_file():
        raise RtsegError("pass a BUNDLE to segment here, or --remote URL of an rtseg serve service (not both)")
    args.bundle = None if args.remote else (paths.pop(0) if paths else None)
    args.source = paths + list(args.source)
    if args.remote is None and args.bundle is None:
        raise RtsegError("pass a BUNDLE and a SOURCE (rtseg run BUNDLE video.mp4), or --remote URL of an rtseg"
                         " serve service")
    if not args.source:
        raise RtsegError(f"pass a SOURCE after the bundle: rtseg run {args.bundle or 'BUNDLE'} video.mp4 (a video,"
                         " images, a webcam index such as 0, or an rtsp:// URL)")


def run(args: argparse.Namespace) -> int:
    from .outputs import check_output_paths
    from .pipeline import SourceFailed, run_pipeline
    from .sinks import gui_missing_reason
    from .sources import open_source

    _split_paths(args)
    _multiscale(args)
    if not 0.0 <= args.alpha <= 1.0:
        raise RtsegError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.max_frames is not None and args.max_frames < 1:
        raise RtsegError(f"--max-frames must be at least 1, got {args.max_frames}")
    if args.show and (reason := gui_missing_reason()):
        raise RtsegError(reason)
    check_output_paths(args.source, args.save, args.save_masks, args.stats, args.overwrite)
    serve = serve_options(args)  # a busy port, a bad token, no aiortc: found before the model loads, not after
    if args.remote is None:
        from .paths import resolve_bundle

        args.bundle = str(resolve_bundle(args.bundle))
    if args.stream:  # a bad URL or an unknown host before the model loads
        from .rtp import check_stream

        check_stream(args.stream)
    if len(args.source) > 1:
        if args.stream:
            raise RtsegError("--stream sends one source; run one rtseg run per source, each to its own port")
        return _run_streams(args)
    source = open_source(args.source[0], live=args.live, vid_stride=args.vid_stride)
    try:
        seg = _open_segmenter(args)
    except BaseException:
        source.close()
        raise
    try:
        picture = _picture(seg, args)
        default_dir = _default_save(args, source)
    except BaseException:
        seg.close()
        source.close()
        raise

    with seg:
        d = seg.describe()
        if not args.quiet:
            print(f"rtseg: {source.name} ({'live' if source.live else 'lossless'}) -> {d['backend']} "
                  f"{d['device']}", file=sys.stderr, flush=True)
        try:
            summary = run_pipeline(seg, source, save=args.save, save_masks=args.save_masks, serve=serve,
                                   stats=args.stats, alpha=args.alpha, max_frames=args.max_frames,
                                   show=args.show, colour_masks=args.colour_masks, progress=not args.quiet,
                                   picture=picture, save_quality=args.save_quality,
                                   stream=args.stream)
        except SourceFailed as exc:
            if exc.summary is not None:
                _print_summary(exc.summary)
            raise
        finally:
            if default_dir is not None:
                from ..files import remove_if_empty

                remove_if_empty(default_dir)
    _print_summary(summary)
    if summary.signal is not None:
        return 128 + int(summary.signal)
    return 0


def _open_segmenter(args):
    if args.remote:
        from ..serve.client import (
            RemoteSegmenter,  # standard-library HTTP only: no Ray on the client
        )

        return RemoteSegmenter(args.remote, token=getattr(args, "token", None))  # None: $RTSEG_TOKEN, if set
    from ..runtime import load

    seg = load(args.bundle, backend=args.backend, device=args.device, **_multiscale(args))
    if seg.untrained:
        print(f"rtseg: warning: {args.bundle} was exported without --weights: its model is untrained and its"
              " masks mean nothing; export a trained checkpoint with rtseg export --weights FILE",
              file=sys.stderr, flush=True)
    return seg


def _multiscale(args) -> dict:
    """--scales/--flip for load(), checked before anything opens; a remote service loads its own bundle."""
    from ..runtime.multiscale import load_options

    options = load_options(args)
    if args.remote and (options["scales"] or options["flip"]):
        raise RtsegError("--scales/--flip apply to a BUNDLE loaded here, not to --remote (the service runs its"
                         " bundle as it was loaded); drop them or run the bundle here")
    return options


def _picture(seg, args):
    from .legend import Picture

    return Picture.for_segmenter(seg, args.visualize, args.alpha, args.legend, args.ignore_class)


def _default_save(args, source):
    """With no sink named (and no --no-save): the picture saved as runs/run/N/<source>.mp4; the folder, made here,
    is returned (removed again if the run writes nothing)."""
    from pathlib import Path

    if args.save or args.save_masks or args.serve or args.show or args.no_save:
        return None
    from .paths import output_dir

    folder = output_dir("run", args.out)
    stem = Path(str(source.name)).stem if not str(source.name).isdigit() else f"webcam{source.name}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RtsegError(f"cannot create {folder} for the overlay video ({exc.strerror}); pass --out DIR or"
                         " --no-save") from None
    args.save = str(folder / f"{stem or 'run'}.mp4")
    if not args.quiet:
        print(f"rtseg: saving the {args.visualize} video to {args.save} (--save FILE to choose, --no-save for"
              " none)", file=sys.stderr, flush=True)
    return folder


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
                                alpha=args.alpha, max_frames=args.max_frames, picture=_picture(seg, args))
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

