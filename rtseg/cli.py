"""The ``rtseg`` command line.

Each subcommand lives in its own module and is imported only when it runs, so ``rtseg --help`` needs no
heavy dependency. A :class:`RtsegError` (or a usage mistake) is printed on one line (``rtseg: error: ...``) with
exit status 2; Ctrl-C or SIGTERM at any point prints ``rtseg: interrupted`` and exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from . import __version__
from .errors import RtsegError
from .interrupts import interrupts_as_keyboard_interrupt

# subcommand -> (module, one-line help). Each module has add_arguments(parser) and run(args) -> int.
_COMMANDS = {
    "models": ("rtseg.models.cli", "list the model zoo: names, parameters, output stride, checkpoint layouts"),
    "export": ("rtseg.export.cli", "checkpoint or ONNX -> verified ONNX, FP16 ONNX and TensorRT engine bundle"),
    "run": ("rtseg.video.cli", "segment a video file, images, a webcam or an RTSP/HTTP stream into a window, "
                               "an mp4, mask PNGs or a browser view"),
    "info": ("rtseg.runtime.info", "what a bundle holds, whether it verifies here, and which backend would run it"),
    "serve": ("rtseg.serve.cli", "serve a bundle over HTTP on Ray Serve: replicas, batching across clients"),
    "triton": ("rtseg.triton.cli", "write a bundle as a Triton Inference Server model repository"),
    "bench": ("rtseg.bench.cli", "latency and throughput: model only, with transfers, end to end on a video"),
    "eval": ("rtseg.eval.cli", "accuracy on a labelled set (FCN metrics), saved masks, or parity of two backends"),
    "demo": ("rtseg.demo.cli", "the shipped street model on a rendered street video: overlay video, FPS and mIoU"),
}


class _OneLineParser(argparse.ArgumentParser):
    """Usage mistakes in one line, like every other rtseg error (argparse prints the whole usage first)."""

    def error(self, message):
        self.exit(2, f"rtseg: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="rtseg", description="Real-time semantic segmentation: export, run, benchmark and evaluate.")
    parser.add_argument("--version", action="version", version=f"rtseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module, _parser=p)
        _add_arguments(module, p)
    return parser


def _add_arguments(module: str, parser: argparse.ArgumentParser) -> None:
    # A command's argument definitions import nothing heavy; its run() does the real imports.
    importlib.import_module(module).add_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    try:
        with interrupts_as_keyboard_interrupt():
            return _main(argv)
    except KeyboardInterrupt:
        print("rtseg: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`rtseg info b | head`): stop quietly, as other CLIs do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit must not fail again
        return 141


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # A positional after an option (rtseg run BUNDLE --quiet video.mp4) joins the command's positionals;
        # anything else is the command's mistake, pointed at its own --help.
        sub = getattr(args, "_parser", parser)
        if hasattr(args, "paths") and not any(e.startswith("-") for e in extra):
            args.paths = [*args.paths, *extra]
        else:
            sub.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help()
        return 0
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except RtsegError as exc:
        print(f"rtseg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
