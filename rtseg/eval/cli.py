"""``rtseg eval``: accuracy of a bundle on a labelled set, of saved masks, or parity between two segmenters.

    rtseg eval BUNDLE --data DIR [--layout auto|cityscapes|camvid|voc|pairs] [--ignore-index 255] [--out DIR]
    rtseg eval BUNDLE --against BUNDLE_OR_BACKEND[:fp16|:fp32] --data IMAGES_OR_VIDEO
    rtseg eval --pred MASK_DIR --data DIR [--num-classes N]
    rtseg eval [BUNDLE] --pred MASK_DIR --labels LABEL_DIR [--classes cityscapes|voc|FILE|a,b,c]

Outputs go to runs/eval/<N>/ unless --out names a folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import RtsegError

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", nargs="?", help="bundle folder made by rtseg export (with --pred: only its class names"
                                             " are read)")
    p.add_argument("--data", help="labelled set root; for --against: images, a video or a set")
    p.add_argument("--layout", default="auto", help="auto, cityscapes, camvid, voc or pairs (default: auto)")
    p.add_argument("--split", help="keep this split only (e.g. val): a folder name, or VOC's list name (default:"
                                   " every image)")
    p.add_argument("--ignore-index", type=int, default=255, help="ground-truth id not counted (default: 255)")
    p.add_argument("--backend", default="auto", choices=BACKENDS, help="backend for BUNDLE (default: auto)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: chosen by the backend)")
    p.add_argument("--precision", choices=("fp16", "fp32"),
                   help="which ONNX graph of BUNDLE to run (default: the backend's choice, as rtseg run makes it)")
    p.add_argument("--weights", help="checkpoint for --backend torch when the bundle's is elsewhere")
    from ..runtime.multiscale import add_arguments as add_multiscale_arguments

    add_multiscale_arguments(p)
    p.add_argument("--against", metavar="BUNDLE_OR_BACKEND",
                   help="parity: another bundle, or a backend of the same bundle; ':fp16'/':fp32' picks its graph")
    p.add_argument("--pred", metavar="MASK_DIR", help="score masks written by rtseg run --save-masks instead")
    p.add_argument("--labels", metavar="LABEL_DIR", help="with --pred: a folder of ground-truth label PNGs (class"
                   " ids), matched to the masks by file name or by position (instead of --data)")
    p.add_argument("--classes", metavar="SET_OR_FILE", help="class names for --pred: cityscapes, voc, a file of"
                   " names (one a line) or a,b,c (default: the BUNDLE's)")
    p.add_argument("--num-classes", type=int,
                   help="classes for --pred when the layout does not fix them (default: from the layout or bundle)")
    p.add_argument("--max-frames", "--limit", dest="limit", type=int, metavar="N",
                   help="evaluate only the first N images or frames (default: all)")
    p.add_argument("--out", default=None, help="folder for eval.json and the confusion matrix (default:"
                                               " runs/eval/N, N one more than the last)")


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise RtsegError(f"--max-frames must be at least 1, not {args.limit}")
    if args.pred and args.against:
        raise RtsegError("--pred scores saved masks and takes no --against; drop one of them")
    if args.labels and not args.pred:
        raise RtsegError("--labels goes with --pred MASK_DIR (two folders of PNGs); to run a BUNDLE use --data")
    if not args.data and not args.labels:
        raise RtsegError("pass --data DIR (a labelled set), or --pred MASK_DIR --labels LABEL_DIR")
    from ..runtime.multiscale import load_options

    multiscale = load_options(args)
    if args.pred and (multiscale["scales"] or multiscale["flip"]):
        raise RtsegError("--scales/--flip change how a BUNDLE segments; --pred scores saved masks: drop them")
    from ..video.paths import output_dir

    args.out = output_dir("eval", args.out)
    if not args.pred and not args.bundle:
        raise RtsegError("give a BUNDLE to evaluate, or --pred MASK_DIR for masks saved by rtseg run --save-masks")
    existed = Path(args.out).exists()
    try:
        return _parity(args) if args.against else _labelled(args)
    except BaseException:  # an error or Ctrl-C leaves no empty --out behind (one it did not create is kept)
        if not existed:
            from ..files import remove_if_empty

            remove_if_empty(Path(args.out))
        raise


def _load(bundle: str, backend: str, args, precision: str | None = None):
    from ..runtime import load
    from ..runtime.multiscale import load_options

    if not Path(bundle).exists():
        raise RtsegError(f"bundle {bundle} does not exist; make one with: rtseg export ... --out {bundle}")
    return load(bundle, backend=backend, device=args.device, precision=precision,
                weights=args.weights if backend == "torch" else None, **load_options(args))


def _labelled(args) -> int:
    from .evaluate import evaluate_masks, evaluate_segmenter
    from .readers import open_dataset
    from .report import prepare_out

    from .pred import check_classes_match, class_names, labels_dataset, mask_palette

    names, trained = class_names(args.classes, args.bundle if args.pred else None)
    ds = (labels_dataset(args.labels, names, args.ignore_index) if args.labels
          else open_dataset(args.data, args.layout, args.ignore_index, args.split))
    out = prepare_out(args.out)
    if args.pred:
        if names and (warning := check_classes_match(names, ds, args.classes or args.bundle)):
            print(warning, file=sys.stderr, flush=True)
        num_classes = args.num_classes or (len(names) if names else None) or ds.num_classes
        if num_classes is None:
            raise RtsegError(f"the {ds.layout} layout does not fix the classes; pass a BUNDLE, --classes or"
                             f" --num-classes")
        if ds.num_classes is not None and num_classes != ds.num_classes:
            raise RtsegError(f"--num-classes {num_classes} but the {ds.layout} layout has {ds.num_classes} classes")
        palette, palette_from = mask_palette(args.classes, args.bundle, ds.layout)
        if palette is not None and len(palette) != num_classes:
            palette, palette_from = None, ""
        cm = evaluate_masks(Path(args.pred), ds, num_classes, args.limit, palette, palette_from)
        names = (names if names and len(names) == num_classes else None) or ds.class_names or [
            f"class_{i}" for i in range(num_classes)]
        source = {"pred": str(args.pred), "labels": str(args.labels) if args.labels else None,
                  "classes_trained": [names[i] for i in trained] if trained else None}
    else:
        with _load(args.bundle, args.backend, args, args.precision) as seg:
            if ds.num_classes is not None and ds.num_classes != seg.num_classes:
                raise RtsegError(f"the bundle has {seg.num_classes} classes, the {ds.layout} set {ds.num_classes};"
                                 f" evaluate a model trained on this dataset's classes")
            if warning := check_classes_match(seg.class_names, ds, f"the bundle {args.bundle}"):
                print(warning, file=sys.stderr, flush=True)
            cm = evaluate_segmenter(seg, ds, args.limit)
            names = ds.class_names or seg.class_names
            source = {"bundle": str(args.bundle), "runtime": seg.describe()}
    images = min(len(ds.samples), args.limit or len(ds.samples))
    return _finish(out, cm, names, {"mode": "labelled", **source, "data": str(args.data or args.labels),
                                    "layout": ds.layout,
                                    "split": args.split, "images": images, "ignore_index": args.ignore_index,
                                    "ignored_pixels": cm.ignored})


def _parity(args) -> int:
    from .evaluate import evaluate_parity
    from .frames import open_frames
    from .report import prepare_out

    frames = open_frames(args.data, args.layout, args.split)
    out = prepare_out(args.out)
    target, _, precision = args.against.partition(":")
    if precision and precision not in ("fp16", "fp32"):
        raise RtsegError(f"--against {args.against}: the part after ':' must be fp16 or fp32")
    if target in BACKENDS:
        other_bundle, other_backend = args.bundle, target
    elif Path(target).exists():
        other_bundle, other_backend = target, args.backend
    else:
        raise RtsegError(f"--against {target} is neither a bundle folder nor a backend ({', '.join(BACKENDS)})")
    with _load(args.bundle, args.backend, args, args.precision) as reference, \
            _load(other_bundle, other_backend, args, precision or None) as candidate:
        cm, count, ended_early = evaluate_parity(reference, candidate, frames, args.limit)
        sides = {"reference": reference.describe(), "candidate": candidate.describe()}
        names = reference.class_names
    code = _finish(out, cm, names, {"mode": "parity", **sides, "data": str(args.data), "frames": count,
                                    "ended_early": ended_early}, parity=True)
    if ended_early:  # as rtseg run does: the frames decoded are scored and written, then the one line, exit 2
        raise RtsegError(f"{ended_early}; the scores in {out} cover those {count} frames")
    return code


def _finish(out: Path, cm, names: list[str], info: dict, parity: bool = False) -> int:
    from .metrics import scores
    from .report import table, write_outputs

    s = scores(cm.matrix)
    print(table(s, names))
    report = {**info, **s.as_dict(names)}
    if parity:
        # With one side as ground truth, pixel accuracy is the share of pixels where the two agree.
        report["agreement"] = report["pixel_accuracy"]
        print(f"agreement {100 * s.pixel_accuracy:.3f}% of pixels; mean IU of one against the other"
              f" {100 * s.mean_iou:.2f}%")
    report["title"] = "parity" if parity else f"confusion ({info.get('layout')})"
    written = write_outputs(out, report, cm.matrix, names)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
