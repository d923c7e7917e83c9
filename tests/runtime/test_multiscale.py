"""Multi-scale + flip inference (rtseg.runtime.multiscale) against an independent PyTorch statement of the same
averaging, on the demo's trained street Fast-SCNN exported with --dynamic and frames of the demo's street renderer;
and the inputs it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from rtseg.errors import RtsegError
from rtseg.scenes import synthetic_scenes

torch = pytest.importorskip("torch")
F = torch.nn.functional

WEIGHTS = "rtseg/demo/weights/fast_scnn_street.pth"
FRAME_HW = (180, 320)
BASE = (160, 288)  # the bundle's input size for a 180x320 frame: its optimisation size
SCALES = (0.75, 1.0, 1.25)


@pytest.fixture(scope="module")
def dynamic_bundle(tmp_path_factory):
    from rtseg.cli import main

    out = tmp_path_factory.mktemp("multiscale") / "fast_scnn_street"
    code = main(["export", "--model", "fast_scnn", "--weights", WEIGHTS, "--num-classes", "19",
                 "--input-size", f"{BASE[0]}x{BASE[1]}", "--dynamic", "96x160:256x448", "--calib-frames", "2",
                 "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def street():
    """Four frames of the demo's street video (rendered at 180x320) as BGR, and their ground truth."""
    from rtseg.demo.video import VideoSpec, frame_at

    spec = VideoSpec(height=FRAME_HW[0], width=FRAME_HW[1])
    shots = [frame_at(spec, i) for i in (0, 30, 60, 90)]
    return [np.ascontiguousarray(rgb[..., ::-1]) for rgb, _ in shots], [gt for _, gt in shots]


@pytest.fixture(scope="module")
def torch_model():
    from rtseg.models import create_model, load_checkpoint

    model = create_model("fast_scnn", num_classes=19)
    load_checkpoint(model, WEIGHTS)
    return model.eval()


def reference_labels(model, bgr: np.ndarray, scales, flip: bool, manifest, frame_resize: str = "cv2") -> np.ndarray:
    """The averaging stated in PyTorch: the frame resized to each scale's input, normalised, run (mirrored too with
    flip), logits flipped back, F.interpolate'd to the largest pass's logits size, averaged, F.interpolate'd to the
    frame, argmax. The frame resize is the bundle format's own (cv2.resize INTER_LINEAR on the uint8 frame), or
    with ``frame_resize="torch"`` F.interpolate on the float frame, which is up to half a grey level away from it."""
    import cv2

    pre = manifest.preprocessing
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    image = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1)[None].float()  # RGB
    ac = manifest.upsample.align_corners
    outs = []
    with torch.no_grad():
        for s in scales:
            # sizes by hand: the base size times the scale, to the nearest multiple of 32 (no clamping here)
            size = tuple(int(32 * round(n * s / 32)) for n in BASE)
            if frame_resize == "torch":
                x = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
            else:
                x = torch.from_numpy(cv2.resize(np.ascontiguousarray(bgr[..., ::-1]), size[::-1],
                                                interpolation=cv2.INTER_LINEAR)).permute(2, 0, 1)[None].float()
            x = (x / 255.0 - mean) / std
            outs.append(model.forward_lowres(x))
            if flip:
                outs.append(torch.flip(model.forward_lowres(torch.flip(x, [3])), [3]))
    common = max((o.shape[2:] for o in outs), key=lambda hw: hw[0] * hw[1])
    avg = torch.stack([F.interpolate(o, size=tuple(common), mode="bilinear", align_corners=ac)
                       for o in outs]).mean(0)
    up = F.interpolate(avg, size=bgr.shape[:2], mode="bilinear", align_corners=ac)
    return up.argmax(1)[0].numpy()


def test_labels_equal_the_pytorch_statement(dynamic_bundle, street, torch_model):
    from rtseg.runtime import load

    frames, truth = street
    with load(dynamic_bundle, backend="onnxruntime", device="cpu", scales=SCALES, flip=True) as seg, \
            load(dynamic_bundle, backend="onnxruntime", device="cpu") as single:
        assert seg.multiscale.sizes(FRAME_HW) == [(192, 352)] * 2 + [(160, 288)] * 2 + [(128, 224)] * 2
        ours = [seg.segment(f) for f in frames]
        one = [single.segment(f).labels for f in frames]
        manifest = seg.manifest
    refs = [reference_labels(torch_model, f, SCALES, True, manifest) for f in frames]
    labels = np.stack([r.labels for r in ours])
    ref = np.stack(refs)
    agree = (labels == ref).mean()
    assert agree >= 0.9999, f"multi-scale+flip labels agree with the PyTorch statement on {agree:.4%} of pixels"
    # the frame resized by F.interpolate instead moves labels where two classes nearly tie, in a single pass too
    # (99.91% there on these frames); the average of six passes agrees with that statement on 99.96%
    loose = np.stack([reference_labels(torch_model, f, SCALES, True, manifest, "torch") for f in frames])
    assert (labels == loose).mean() >= 0.999
    # the passes matter: several classes per frame, and the averaged labels are not the single pass's
    assert min(len(np.unique(lab)) for lab in labels) >= 4
    changed = (labels != np.stack(one)).mean()
    assert changed > 0.002, f"multi-scale+flip changed only {changed:.4%} of pixels"
    # the statement without flip is another answer: the flip passes are really averaged in
    no_flip = np.stack([reference_labels(torch_model, f, SCALES, False, manifest) for f in frames])
    assert (no_flip != ref).mean() > 0.001
    # stage timings: the passes' totals, the merge and the one postprocess
    assert set(ours[0].timings) == {"preprocess", "infer", "merge", "postprocess"}
    assert all(v >= 0 for v in ours[0].timings.values())
    assert ours[0].labels.shape == FRAME_HW and ours[0].input_size == BASE


def test_flip_only_and_score(dynamic_bundle, street, torch_model):
    from rtseg.runtime import load

    frames, _ = street
    with load(dynamic_bundle, backend="onnxruntime", device="cpu", flip=True) as seg:
        assert seg.describe()["multiscale"] == {"scales": [1.0], "flip": True, "passes": 2}
        r = seg.segment(frames[1], return_score=True)
        ref = reference_labels(torch_model, frames[1], (1.0,), True, seg.manifest)
        batch = seg.segment_batch(frames[:2])
    assert (r.labels == ref).mean() >= 0.9999
    assert r.score is not None and r.score.shape == FRAME_HW and np.isfinite(r.score).all()
    assert np.array_equal(batch[1].labels, r.labels)


def test_sizes_round_and_clamp():
    from rtseg.bundle import InputSpec
    from rtseg.runtime.multiscale import scaled_size

    spec = InputSpec((160, 288), (96, 160), (256, 448), 32)
    assert scaled_size(spec, (160, 288), 0.75) == (128, 224)
    assert scaled_size(spec, (160, 288), 2.0) == (256, 448)  # clamped to the profile's largest multiple of 32
    assert scaled_size(spec, (160, 288), 0.25) == (96, 160)
    assert scaled_size(InputSpec((64, 128)), (64, 128), 1.0) == (64, 128)


@pytest.mark.parametrize("text, says", [
    ("0", "above 0"), ("-0.5", "above 0"), ("", "empty"), (" , ", "empty"), ("0.75,,1", "not a number"),
    ("a,b", "not a number"), ("nan", "above 0"), ("inf", "above 0"), ("1,1.0", "twice"), ("20", "above 8"),
])
def test_bad_scales_are_one_line(text, says):
    from rtseg.runtime.multiscale import read_scales

    with pytest.raises(RtsegError, match=says) as err:
        read_scales(text)
    assert "\n" not in str(err.value)
    assert read_scales("0.75, 1,1.25") == (0.75, 1.0, 1.25)


def test_refused_bundles(fast_scnn_bundle, tmp_path):
    from rtseg.cli import main
    from rtseg.runtime import load

    with pytest.raises(RtsegError, match="re-export it with --dynamic") as err:
        load(fast_scnn_bundle, backend="onnxruntime", device="cpu", scales=(0.75, 1.0))
    assert "\n" not in str(err.value)
    with load(fast_scnn_bundle, backend="onnxruntime", device="cpu", scales=(1.0,), flip=True) as seg:
        assert seg.describe()["multiscale"]["passes"] == 2  # a fixed-size bundle still flips
    with load(fast_scnn_bundle, backend="onnxruntime", device="cpu", scales=[1]) as seg:
        assert seg.multiscale is None and "multiscale" not in seg.describe()
    labels_head = tmp_path / "labels_head"
    assert main(["export", "--model", "fast_scnn", "--weights", WEIGHTS, "--num-classes", "19", "--input-size",
                 "64x128", "--head", "labels", "--calib-frames", "1", "--out", str(labels_head)]) == 0
    with pytest.raises(RtsegError, match="ends in labels"):
        load(labels_head, backend="onnxruntime", device="cpu", flip=True)
    with load(labels_head, backend="onnxruntime", device="cpu") as seg:  # one pass: labels heads run as always
        frame = np.ascontiguousarray(synthetic_scenes(1, 64, 128)[0][..., ::-1])
        assert seg.multiscale is None and seg.segment(frame).labels.shape == (64, 128)


@pytest.mark.parametrize("command", ["run", "eval"])
@pytest.mark.parametrize("value", ["0", "-1", "", "x"])
def test_cli_bad_scales(fast_scnn_bundle, tmp_path, capsys, command, value):
    from rtseg.cli import main

    argv = ([command, str(fast_scnn_bundle), str(tmp_path / "nothing.mp4"), "--out", str(tmp_path / "o")]
            if command == "run" else [command, str(fast_scnn_bundle), "--data", str(tmp_path), "--out",
                                      str(tmp_path / "o")])
    code = main([*argv, "--scales", value, "--flip"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("rtseg: error: --scales"), err
    assert not (tmp_path / "o").exists()


def test_cli_fixed_bundle_refused(fast_scnn_bundle, tmp_path, capsys):
    from rtseg.cli import main
    from rtseg.demo.video import VideoSpec, frame_at

    import cv2

    image = tmp_path / "frames" / "a.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), frame_at(VideoSpec(height=64, width=128), 0)[0][..., ::-1])
    code = main(["run", str(fast_scnn_bundle), str(image.parent), "--device", "cpu", "--scales", "0.75,1",
                 "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--dynamic" in err[0], err


def test_eval_and_bench_take_the_passes(dynamic_bundle, street, tmp_path, capsys):
    """rtseg eval --scales/--flip scores what load(scales=, flip=) segments; rtseg bench adds its rows."""
    import json

    import cv2

    from rtseg.cli import main
    from rtseg.eval.metrics import ConfusionMatrix, scores
    from rtseg.runtime import load

    frames, truth = street
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    cm = ConfusionMatrix(19, ignore_index=255)
    with load(dynamic_bundle, backend="onnxruntime", device="cpu", scales=SCALES, flip=True) as seg:
        for i, (frame, gt) in enumerate(zip(frames, truth)):
            cv2.imwrite(str(root / "images" / f"f{i}.png"), frame)
            cv2.imwrite(str(root / "labels" / f"f{i}.png"), gt)
            cm.update(gt, seg.segment(frame).labels)
    argv = ["eval", str(dynamic_bundle), "--data", str(root), "--backend", "onnxruntime", "--device", "cpu"]
    assert main([*argv, "--scales", "0.75,1,1.25", "--flip", "--out", str(tmp_path / "ms")]) == 0
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    ms = json.loads((tmp_path / "ms" / "eval.json").read_text())["mean_iou"]
    one = json.loads((tmp_path / "one" / "eval.json").read_text())["mean_iou"]
    assert ms == pytest.approx(scores(cm.matrix).as_dict()["mean_iou"], abs=1e-12) and ms != one

    out = tmp_path / "bench"
    assert main(["bench", str(dynamic_bundle), "--backend", "onnxruntime", "--device", "cpu", "--frames", "2",
                 "--warmup", "1", "--tiers", "a,b", "--no-naive", "--frame-size", "180x320", "--scales", "0.75,1",
                 "--flip", "--out", str(out)]) == 0
    rows = json.loads((out / "bench.json").read_text())["rows"]
    assert [(r["bundle"].split(" ", 1)[-1], r["tier"]) for r in rows] == [
        ("fast_scnn_street", "a"), ("fast_scnn_street", "b"), ("(scales 0.75,1 + flip)", "b")]
    assert set(rows[2]["stages_ms"]) == {"preprocess", "infer", "merge", "postprocess"}
    assert "(scales 0.75,1 + flip)" in capsys.readouterr().out
