"""``rtseg bench``: every bundle x backend x size in three tiers, beside a naive PyTorch row, in one table.

    rtseg bench BUNDLE [BUNDLE ...] [--backend auto,onnxruntime,torch,...] [--device ...] [--size HxW ...]
                [--source VIDEO] [--max-frames N] [--warmup N] [--out DIR] [--md]

Without ``--source`` the end-to-end tier runs on a synthetic street video written for the run. Ctrl-C stops the
run and prints (and writes) what was measured so far.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import RtsegError

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")
ALL_TIERS = ("a", "b", "c")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="bundle folders made by rtseg export")
    p.add_argument("--backend", action="append", help="comma-separated backends: auto, onnxruntime, torch,"
                                                      " tensorrt (default: auto; may be repeated)")
    p.add_argument("--device", help="cpu, cuda or cuda:N; a GPU asked for and not used fails the bench (default: the"
                   " backend's choice)")
    p.add_argument("--precision", help="comma-separated precisions, each a row per backend: fp16, fp32, int8 (the"
                   " bundle's INT8 graph), bf16 (OpenVINO); default: the backend's own choice")
    p.add_argument("--size", action="append", metavar="HxW",
                   help="network input size (a dynamic bundle's; may be repeated; default: the bundle's)")
    p.add_argument("--source", help="video (or images) for the end-to-end tier and the host frames"
                                    " (default: a synthetic street video, --frame-size)")
    p.add_argument("--frame-size", default="360x640", metavar="HxW",
                   help="size of the synthetic video's frames (default: 360x640)")
    p.add_argument("--max-frames", "--frames", dest="frames", type=int, default=100, metavar="N",
                   help="timed frames per row (default: 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed frames before each row (default: 10)")
    p.add_argument("--tiers", default="a,b,c", help="which tiers: a (model only), b (model + transfers),"
                                                    " c (end to end); default a,b,c")
    p.add_argument("--threads", type=int, help="CPU threads for ONNX Runtime, PyTorch and rtseg's kernels"
                                               " (default: the cores this process may use)")
    p.add_argument("--batch", metavar="N,N,...", help="instead of the tiers: per-frame latency and throughput of"
                                                      " segment_batch at these batch sizes, e.g. 1,2,4,8")
    from ..runtime.multiscale import add_arguments as add_multiscale_arguments

    add_multiscale_arguments(p)  # beside each configuration's rows, its (b) and (c) rows with these passes
    p.add_argument("--no-naive", action="store_true", help="leave out the naive PyTorch baseline row")
    p.add_argument("--out", default=None, help="folder for bench.json, bench.csv and the plots (default:"
                                               " runs/bench/N, N one more than the last)")
    p.add_argument("--md", action="store_true", help="print the table as Markdown (default: aligned columns)")


def _sizes(values: list[str] | None) -> list[tuple[int, int] | None]:
    from ..sizes import parse_size

    return [parse_size(v, "--size") for v in values] if values else [None]


def _precisions(value: str | None) -> list[str]:
    """--precision's comma-separated list ("" where not given: the backend chooses)."""
    from ..runtime.select import PRECISIONS

    names = [p.strip() for p in (value or "").split(",") if p.strip()] or [""]
    wrong = [p for p in names if p and p not in PRECISIONS]
    if wrong:
        raise RtsegError(f"--precision {value!r}: use a comma-separated subset of {', '.join(PRECISIONS)}")
    return list(dict.fromkeys(names))


def _backends(values: list[str] | None) -> list[str]:
    names = [b.strip() for v in (values or ["auto"]) for b in v.split(",") if b.strip()]
    for name in names:
        if name not in BACKENDS:
            raise RtsegError(f"unknown backend {name!r} in --backend; use {', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


def run(args: argparse.Namespace) -> int:
    from ..eval.report import prepare_out

    if args.frames < 1 or args.warmup < 0:
        raise RtsegError("--max-frames (--frames) must be at least 1 and --warmup at least 0")
    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    if not tiers or any(t not in ALL_TIERS for t in tiers):
        raise RtsegError(f"--tiers {args.tiers!r}: use a comma-separated subset of a, b, c")
    backends, sizes = _backends(args.backend), _sizes(args.size)
    backends = [f"{b}@{p}" for b in backends for p in _precisions(args.precision)]  # one row per pair
    from ..runtime.multiscale import load_options

    args.multiscale = load_options(args)
    batches = None
    if getattr(args, "batch", None) is not None:
        from ..runtime.batch import read_batch_sizes

        batches = read_batch_sizes(args.batch)
    from ..bundle import read_document

    for bundle in args.bundles:
        read_document(bundle)  # each manifest before the first measurement: a missing folder, a file, ...
    if args.threads is not None and args.threads < 1:
        raise RtsegError(f"--threads must be at least 1, not {args.threads}")
    from ..video.paths import output_dir

    out_dir = output_dir("bench", args.out)
    existed = out_dir.exists()
    out = prepare_out(out_dir)
    try:
        return _run_in(args, backends, sizes, tiers, batches, out)
    except BaseException:  # an error or Ctrl-C leaves no empty --out behind (one it did not create is kept)
        if not existed:
            from ..files import remove_if_empty

            remove_if_empty(out)
        raise


def _run_in(args, backends, sizes, tiers, batches, out: Path) -> int:
    from ..sizes import parse_size

    with cpu_threads(args.threads, "torch" in backends or not args.no_naive), \
            tempfile.TemporaryDirectory(prefix="rtseg-bench-source-") as tmp:
        source = args.source
        if source is None:
            # long enough for the end-to-end tier; the other tiers cycle through the first 64 frames
            length = args.warmup + args.frames if "c" in tiers else min(args.warmup + args.frames, 64)
            source = str(synthetic_video(Path(tmp) / "synthetic.mp4", parse_size(args.frame_size, "--frame-size"),
                                         length))
        if batches:
            return _bench_batches(args, backends, sizes, batches, source, out)
        return _bench(args, backends, sizes, tiers, source, out)


def _bench_batches(args, backends, sizes, batches: list[int], source: str, out: Path) -> int:
    from ..files import write_json
    from ..machine import describe_machine, machine_stamp
    from .batches import batch_markdown, batch_rows

    frames = host_frames(source, max(batches))
    table = []
    for bundle in args.bundles:
        for size in sizes:
            for backend in backends:
                with _load(bundle, backend, args.device, args.precision, size) as seg:
                    table += batch_rows(seg, Path(bundle).resolve().name, seg.describe().get("backend", backend),
                                        frames, batches, args.frames, args.warmup)
    stamp = machine_stamp()
    print(batch_markdown(table))
    print(f"\nmachine: {describe_machine(stamp)}")
    path = out / "bench_batches.json"
    write_json(path, {"command": "rtseg bench " + " ".join(sys.argv[2:]), "machine": stamp, "rows": table,
                      "frame_size": list(frames[0].shape[:2])})
    print(f"wrote {path}")
    return 0


@contextmanager
def cpu_threads(threads: int | None, uses_torch: bool):
    """Every CPU thread pool at ``threads`` for the run (RTSEG_NUM_THREADS for the kernels and ONNX Runtime,
    torch.set_num_threads for PyTorch), restored afterwards."""
    if threads is None:
        yield
        return
    previous_env = os.environ.get("RTSEG_NUM_THREADS")
    os.environ["RTSEG_NUM_THREADS"] = str(threads)
    torch = None
    if uses_torch:
        from ..runtime.torch import import_torch

        torch = import_torch()
        previous_torch = torch.get_num_threads()
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if previous_env is None:
            os.environ.pop("RTSEG_NUM_THREADS", None)
        else:
            os.environ["RTSEG_NUM_THREADS"] = previous_env
        if torch is not None:
            torch.set_num_threads(previous_torch)


def synthetic_video(path: Path, size: tuple[int, int], count: int) -> Path:
    """A short street-like video (rtseg.scenes), MPEG-4 in mp4, for runs without --source."""
    import av

    from ..scenes import synthetic_scenes

    distinct = min(count, 30)  # the scenes repeat after 30 frames: enough variety, quick to draw
    frames = synthetic_scenes(distinct, *size, seed=2024)  # (N, H, W, 3) RGB
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        for i in range(count):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frames[i % distinct], format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def host_frames(source: str, limit: int) -> list:
    """The first ``limit`` frames of the source, decoded once, for the tiers that start from a host frame."""
    from ..video import open_source

    frames = []
    with open_source(source, live=False) as src:
        while len(frames) < limit and (frame := src.read()) is not None:
            frames.append(frame.image)
    if not frames:
        raise RtsegError(f"--source {source} gave no frames; pass a video or images with frames in them")
    return frames


def _bench(args, backends, sizes, tiers, source: str, out: Path) -> int:
    from tqdm import tqdm

    from ..machine import describe_machine, machine_stamp
    from . import tiers as T
    from .report import markdown, rows, write_outputs

    frames = host_frames(source, min(args.warmup + args.frames, 64))
    frame_hw = tuple(frames[0].shape[:2])
    per_row = args.warmup + args.frames
    per_config = len(tiers) + (len(set(tiers) - {"a"}) if args.multiscale["scales"] or args.multiscale["flip"] else 0)
    rows_planned = len(args.bundles) * len(sizes) * (len(backends) * per_config + (0 if args.no_naive else 1))
    measurements: list[T.Measurement] = []
    interrupted = False
    bar = tqdm(total=rows_planned * per_row, desc="bench", unit="frame", dynamic_ncols=True, disable=None)
    try:
        for bundle in args.bundles:
            name = Path(bundle).resolve().name
            for size in sizes:
                input_size = None
                for backend in backends:
                    with _load(bundle, backend, args.device, args.precision, size) as seg:
                        info = seg.describe()
                        input_size = tuple(seg.input_size_for(frame_hw))
                        bar.set_postfix_str(f"{name} {backend} {input_size[0]}x{input_size[1]}")
                        # a fresh session's first runs are slow (allocations, kernel choice): warm the whole
                        # configuration before its first tier, then each tier warms up again on its own loop
                        T.in_worker(T.warm_up, seg, frames, args.warmup, lambda: None)
                        for tier in tiers:
                            m = T.Measurement(name, info.get("backend", backend), tier, input_size, frame_hw, info)
                            bar.write(f"bench: {name} {m.backend} {input_size[0]}x{input_size[1]} {tier}:"
                                      f" {T.TIERS[tier]}", file=sys.stderr)
                            measurements.append(m)
                            if tier == "a":
                                T.in_worker(T.model_only, seg, frames[0], m, args.frames, args.warmup, bar.update)
                            elif tier == "b":
                                T.in_worker(T.with_transfers, seg, frames, m, args.frames, args.warmup, bar.update)
                            else:
                                T.end_to_end(seg, source, m, args.frames, args.warmup, bar.update)
                    if args.multiscale["scales"] or args.multiscale["flip"]:
                        _multiscale_rows(bundle, name, backend, size, frames, source, tiers, args, bar, measurements)
                if not args.no_naive and input_size is not None:
                    _naive_row(bundle, name, input_size, frame_hw, frames, args, bar, measurements)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    measured = [m for m in measurements if m.latencies]
    # a row with nothing measured is left out of the table, never without a word (a one-frame source has no
    # frame left for tier (c) after its warm-up)
    skipped = [{"bundle": m.bundle, "backend": m.backend, "tier": m.tier, "input": f"{m.input_size[0]}x"
                f"{m.input_size[1]}", "reason": m.note or "no frame was measured"}
               for m in measurements if not m.latencies and not interrupted]
    said = [f"tier ({s['tier']}) of {s['bundle']} {s['backend']} {s['input']} skipped: {s['reason']}" for s in skipped]
    if said and not measured:
        raise RtsegError(f"nothing was measured: {said[0]}")
    for line in said:
        print(f"rtseg: warning: {line}", file=sys.stderr, flush=True)
    table = rows(measured)
    stamp = machine_stamp()
    document = {"command": "rtseg bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "",
                "machine": stamp, "machine_line": describe_machine(stamp), "source": str(args.source or
                "synthetic street video"), "frame_size": list(frame_hw), "frames": args.frames,
                "warmup": args.warmup, "threads": args.threads, "interrupted": interrupted,
                "rows": [{**r, "samples_ms": [s * 1e3 for s in m.latencies]} for r, m in zip(table, measured)],
                "skipped": skipped}
    if interrupted:
        print("rtseg: interrupted; what was measured so far:", file=sys.stderr)
    print(markdown(table, md=args.md))
    print(f"\nmachine: {document['machine_line']}")
    if measured:
        written = write_outputs(out, document, table, measured)
        print("wrote " + ", ".join(str(p) for p in written))
    return 130 if interrupted else 0


def _load(bundle: str, backend: str, device: str | None, precision: str | None, size, **multiscale):
    """Load one configuration; a GPU that was asked for and not used is an error, never a slow figure."""
    from ..runtime import load

    backend, _, asked = backend.partition("@")  # "auto@int8": --backend and --precision of one row
    precision = asked or None
    seg = load(bundle, backend=backend, device=device, precision=precision, input_size=size, **multiscale)
    info = seg.describe()
    if device and device.lower() not in ("cpu", "auto") and not str(info.get("device", "")).startswith("cuda"):
        seg.close()
        raise RtsegError(f"{bundle} with --backend {backend} was asked to run on {device} but runs on"
                         f" {info.get('device')} ({info.get('provider')}); fix the GPU set-up (rtseg info {bundle})"
                         f" instead of benchmarking the CPU")
    return seg


def _multiscale_rows(bundle, name, backend, size, frames, source, tiers, args, bar, measurements) -> None:
    """The configuration again with --scales/--flip: its (b) and (c) rows, named "BUNDLE (scales ... + flip)" (tier
    (a) times one model call, which the passes do not change)."""
    from ..runtime.multiscale import label
    from . import tiers as T

    frame_hw = tuple(frames[0].shape[:2])
    with _load(bundle, backend, args.device, args.precision, size, **args.multiscale) as seg:
        info, input_size = seg.describe(), tuple(seg.input_size_for(frame_hw))
        T.in_worker(T.warm_up, seg, frames, args.warmup, lambda: None)
        for tier in [t for t in tiers if t != "a"]:
            m = T.Measurement(f"{name} ({label(**args.multiscale)})", info.get("backend", backend), tier,
                              input_size, frame_hw, info)
            bar.write(f"bench: {m.bundle} {m.backend} {input_size[0]}x{input_size[1]} {tier}: {T.TIERS[tier]}",
                      file=sys.stderr)
            measurements.append(m)
            if tier == "b":
                T.in_worker(T.with_transfers, seg, frames, m, args.frames, args.warmup, bar.update)
            else:
                T.end_to_end(seg, source, m, args.frames, args.warmup, bar.update)


def _naive_row(bundle: str, name: str, input_size, frame_hw, frames, args, bar, measurements: list) -> None:
    from ..bundle import read_manifest
    from . import tiers as T
    from .naive import NaiveBaseline

    device = "cuda" if args.device and args.device.lower().startswith(("cuda", "gpu")) else "cpu"
    baseline = NaiveBaseline(read_manifest(bundle), Path(bundle), input_size, device)
    m = T.Measurement(name, "torch", "naive", input_size, frame_hw,
                      {"backend": "torch", "device": device, "provider": f"PyTorch eager ({device}), by hand",
                       "graph": "naive"})
    measurements.append(m)
    bar.write(f"bench: {name} naive torch {input_size[0]}x{input_size[1]}", file=sys.stderr)
    T.in_worker(T.naive, baseline, frames, m, args.frames, args.warmup, bar.update)
