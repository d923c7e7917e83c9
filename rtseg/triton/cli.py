"""``rtseg triton BUNDLE DIR``: write a bundle as a model of a Triton Inference Server model repository."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import RtsegError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="an rtseg bundle directory (from rtseg export)")
    parser.add_argument("repo", metavar="DIR", help="the model repository; the model goes into DIR/NAME")
    parser.add_argument("--name", help="the model's name in the repository (default: the bundle's model name)")
    parser.add_argument("--graph", default="auto", choices=("auto", "onnx", "onnx_fp16", "engine"),
                        help="what Triton serves: auto (default) is the TensorRT engine where the bundle has one"
                             " (tensorrt_plan), else the FP32 ONNX graph (onnxruntime_onnx)")
    parser.add_argument("--max-batch", type=int, default=8, help="largest batch Triton's dynamic batcher forms"
                                                                  " (default 8)")
    parser.add_argument("--queue-delay-us", type=int, default=2000,
                        help="how long a request may wait for others to join its batch (default 2000 µs)")
    parser.add_argument("--force", action="store_true", help="replace an existing DIR/NAME")


def run(args) -> int:
    from .repository import RepositoryOptions, write_repository

    if args.queue_delay_us < 0:
        raise RtsegError(f"--queue-delay-us {args.queue_delay_us}: must be 0 or more")
    write_repository(RepositoryOptions(bundle=Path(args.bundle), repo=Path(args.repo), name=args.name,
                                       graph=args.graph, max_batch=args.max_batch,
                                       queue_delay_us=args.queue_delay_us, force=args.force))
    return 0
