"""The training script learns (a few steps lower the loss), and the shipped weights are a model that segments."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("cv2")

from rtseg.demo.data import labelled_frame
from rtseg.demo.train import WEIGHTS, TrainConfig, evaluate, train
from rtseg.models import create_model


def test_a_few_training_steps_lower_the_loss(tmp_path):
    out = tmp_path / "street.pth"
    cfg = TrainConfig(steps=10, minutes=0, batch=4, size=(64, 128), crop=(64, 96), pool=8, workers=1,
                      val_frames=0, eval_every=0, out=out, lr=3e-3)
    result = train(cfg, progress=False, log=lambda line: None)
    assert result["steps"] == 10
    first, last = np.mean(result["first_losses"][:2]), result["last_loss"]
    assert last < 0.85 * first, (first, last)
    # what it wrote is a float16 state_dict that loads through the checkpoint path users' checkpoints take
    state = torch.load(out, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    model = create_model("fast_scnn", num_classes=19, checkpoint=out)
    assert torch.allclose(model.classifier.conv[1].weight, state["classifier.conv.1.weight"].float())
    assert out.with_suffix(".json").is_file()


def test_shipped_weights_segment_held_out_frames():
    assert WEIGHTS.is_file(), "the trained demo weights are part of the package"
    assert WEIGHTS.stat().st_size < 5 * 2**20
    model = create_model("fast_scnn", num_classes=19, checkpoint=WEIGHTS)
    frames = [labelled_frame("test", i, (288, 512), render_size=(288, 512)) for i in range(4)]
    rgb = np.stack([f[0] for f in frames])
    labels = np.stack([f[1] for f in frames])
    torch.set_num_threads(1)
    miou, per_class = evaluate(model, rgb, labels, size=(288, 512))
    assert miou > 0.7, per_class
    assert per_class["road"] > 0.9 and per_class["car"] > 0.5 and per_class["person"] > 0.3, per_class
