"""``rtseg info BUNDLE``: what a bundle holds, whether it verifies here, and where ``auto`` would run it."""

from __future__ import annotations

import argparse

from ..errors import RtsegError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="a bundle folder written by rtseg export (or its rtseg.json)")
    parser.add_argument("--backend", default="auto",
                        help="auto, tensorrt, onnxruntime, openvino or torch (default: auto)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: choose)")


def run(args: argparse.Namespace) -> int:
    from ..bundle import check_artifact, open_bundle

    bundle = open_bundle(args.bundle)
    m = bundle.manifest
    model, inp, out, ver = m["model"], m["input"], m["output"], m.get("verification") or {}
    print(f"bundle   {bundle.root}")
    print(f"model    {model.get('name')} ({model.get('family')}), {model['num_classes']} classes:"
          f" {', '.join(model.get('class_names', [])[:8])}{' ...' if len(model.get('class_names', [])) > 8 else ''}")
    if inp.get("profile"):
        p = inp["profile"]
        size = (f"dynamic {p['min'][2]}x{p['min'][3]} to {p['max'][2]}x{p['max'][3]}"
                f" (opt {p['opt'][2]}x{p['opt'][3]}), multiple of {inp.get('size_multiple', 1)}")
    else:
        size = f"{inp['shape'][2]}x{inp['shape'][3]}"
    print(f"input    {size}, {inp.get('channel_order')} mean {inp.get('mean')} std {inp.get('std')}")
    up = out.get("upsample") or {}
    owed = f", upsample owed: {up.get('mode')} align_corners={up.get('align_corners')}" if up else ""
    print(f"output   {out.get('kind')} ({out.get('name')}){owed}")
    for key, entry in (m.get("artifacts") or {}).items():
        if not entry:
            print(f"  {key:<10} -")
            continue
        try:
            check_artifact(bundle, key)
            state = "sha256 ok"
        except RtsegError as exc:
            state = f"PROBLEM: {exc}"
        report = ver.get(key) or {}
        agree = f", agreement {100 * report['agreement']:.3f}%" if "agreement" in report else ""
        print(f"  {key:<10} {entry['file']:<16} {state}{agree}")
    build = m.get("build") or {}
    print(f"built    rtseg {build.get('rtseg')}, torch {build.get('torch')}, onnxruntime {build.get('onnxruntime')},"
          f" TensorRT {build.get('tensorrt') or '-'} {('on ' + build['gpu']) if build.get('gpu') else ''}".rstrip())
    try:
        from . import load

        with load(bundle.root, backend=args.backend, device=args.device) as seg:
            d = seg.describe()
            print(f"runs on  {d['backend']} {d['device']} ({d['provider']}, {d['graph']}): {d['why']}")
    except RtsegError as exc:
        print(f"runs on  cannot run here: {exc}")
        return 1
    return 0
