"""True batches (issue #23, item 3): a bundle exported with ``--max-batch`` runs a list of frames as one inference,
and its labels equal running each frame alone, for every family, at two input sizes.

Weights follow the reference fixtures' fill rule (tests/models/reference.py), so the labels vary over the frame:
each check first makes sure the frames give several classes (an all-one-class picture would prove nothing).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from rtseg.cli import main  # noqa: E402
from rtseg.models import create_model, model_info  # noqa: E402
from rtseg.runtime import load  # noqa: E402
from rtseg.scenes import synthetic_scenes  # noqa: E402
from tests.models.reference import fill  # noqa: E402

#: one model of each family and two input sizes, both in one dynamic bundle
FAMILIES = [
    ("fast_scnn", [(64, 128), (96, 160)]),
    ("bisenetv2", [(64, 128), (96, 160)]),
    ("bisenetv1_faceparsing", [(64, 64), (96, 96)]),
    pytest.param("fcn_resnet50_tv", [(48, 80), (72, 96)], marks=pytest.mark.slow),  # ~30 s: 33M parameters
    pytest.param("icnet_liminn", [(64, 128), (96, 160)], marks=pytest.mark.slow),  # ~25 s
]
BATCH = 4


def _checkpoint(name: str, folder) -> str:
    model = create_model(name, num_classes=model_info(name).default_num_classes)
    with torch.no_grad():
        for key, t in model.state_dict().items():
            t.copy_(torch.from_numpy(fill(key, tuple(t.shape), str(t.dtype))))
    path = folder / f"{name}.pth"
    torch.save(model.state_dict(), path)
    return str(path)


def _export(name: str, sizes, folder) -> str:
    out = folder / name
    lo, hi = min(sizes), max(sizes)
    args = ["export", "--model", name, "--weights", _checkpoint(name, folder), "--input-size", f"{lo[0]}x{lo[1]}",
            "--dynamic", f"{lo[0]}x{lo[1]}:{hi[0]}x{hi[1]}", "--max-batch", str(BATCH), "--precision", "fp32",
            "--calib-frames", "1", "--out", str(out)]
    assert main(args) == 0
    return str(out)


@pytest.mark.parametrize("name,sizes", FAMILIES)
def test_batched_labels_equal_frame_by_frame(name, sizes, tmp_path):
    bundle = _export(name, sizes, tmp_path)
    manifest = json.loads((tmp_path / name / "rtseg.json").read_text())
    assert manifest["build"]["max_batch"] == BATCH
    for size in sizes:
        seg = load(bundle, backend="onnxruntime", device="cpu", input_size=size)
        frames = list(synthetic_scenes(BATCH + 1, *size, seed=sum(size))[..., ::-1].copy())  # BGR, one over BATCH
        calls = []
        infer = seg.runner.infer
        seg.runner.infer = lambda x: calls.append(len(x)) or infer(x)  # count the runner's calls, still run them
        together = seg.segment_batch(frames)
        assert calls == [BATCH, 1], f"{name} {size}: runner calls of {calls} frames, expected one batch of {BATCH}"
        alone = [seg.segment(f).labels for f in frames]
        classes = np.unique(np.concatenate([a.ravel() for a in alone]))
        assert len(classes) >= 3, f"{name} {size}: the frames give only classes {classes.tolist()}"
        same = sum(int((t.labels == a).sum()) for t, a in zip(together, alone))
        total = sum(a.size for a in alone)
        assert same / total >= 0.9999, f"{name} {size}: {same}/{total} labels equal"
        assert all(t.labels.shape == f.shape[:2] for t, f in zip(together, frames))
        seg.close()
        if name == "fast_scnn":  # PyTorch eager takes any batch: the same labels in one call
            with load(bundle, backend="torch", device="cpu", input_size=size) as eager:
                calls.clear()
                infer_eager = eager.runner.infer
                eager.runner.infer = lambda x: calls.append(len(x)) or infer_eager(x)
                batched = eager.segment_batch(frames)
                assert calls == [BATCH + 1]
                same = sum(int((b.labels == eager.segment(f).labels).sum()) for b, f in zip(batched, frames))
                assert same / total >= 0.9999


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_graph_without_batch_axis_runs_frame_by_frame(fast_scnn_bundle, backend, tmp_path):
    if backend == "openvino":
        pytest.importorskip("openvino", reason="the openvino extra is not installed")
    # a bundle written before --max-batch existed: no build.max_batch, so only the graph itself can say "batch 1"
    older = tmp_path / "older"
    shutil.copytree(fast_scnn_bundle, older)
    manifest = json.loads((older / "rtseg.json").read_text())
    manifest["build"].pop("max_batch", None)
    (older / "rtseg.json").write_text(json.dumps(manifest))
    seg = load(str(older), backend=backend, device="cpu")
    frames = list(synthetic_scenes(3, 64, 128)[..., ::-1].copy())
    calls = []
    infer = seg.runner.infer
    seg.runner.infer = lambda x: calls.append(len(x)) or infer(x)
    got = seg.segment_batch(frames)
    assert calls == [1, 1, 1]
    assert all(np.array_equal(g.labels, seg.segment(f).labels) for g, f in zip(got, frames))


@pytest.mark.parametrize("flag", [["export", "--model", "fast_scnn", "--out", "x", "--max-batch", "0"],
                                  ["bench", "x", "--batch", "0"]])
def test_batch_zero_is_one_line(flag, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(flag)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and err[0].startswith("rtseg"), err
    assert "0" in err[0] and "Traceback" not in err[0]


def test_streams_sharing_a_segmenter_get_one_inference_per_batch(tmp_path):
    """SharedSegmenter (several streams into one segmenter) hands its batches to segment_batch: with a bundle
    exported with --max-batch, a batch of frames from several threads is one runner call."""
    import threading

    from rtseg.video.streams import SharedSegmenter

    bundle = _export("fast_scnn", [(64, 128), (64, 128)], tmp_path)
    seg = load(bundle, backend="onnxruntime", device="cpu")
    calls = []
    infer = seg.runner.infer
    seg.runner.infer = lambda x: calls.append(len(x)) or infer(x)
    frames = list(synthetic_scenes(8, 64, 128, seed=5)[..., ::-1].copy())
    alone = [seg.segment(f).labels for f in frames]
    calls.clear()
    shared = SharedSegmenter(seg, max_batch=BATCH, wait_ms=200)
    got = [None] * len(frames)
    start = threading.Barrier(len(frames))

    def send(i):
        start.wait()
        got[i] = shared.segment(frames[i]).labels

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(frames))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shared.close()
    assert all(np.array_equal(g, a) for g, a in zip(got, alone))
    assert sum(calls) == len(frames) and len(calls) < len(frames) and max(calls) > 1, calls
    assert dict(shared.batch_sizes) and all(n <= BATCH for n in shared.batch_sizes), shared.batch_sizes
