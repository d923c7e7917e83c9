"""Fast-SCNN and ICNet pool their 1/32 map adaptively: exported once with dynamic H, W, the ONNX graph must match
PyTorch at other sizes, including ones whose 1/32 map does not divide into the 2, 3 and 6 bins."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from rtseg.models import create_model


def _model(name: str):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5)
    for mod in model.modules():  # non-trivial BN statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize(("name", "trace_size", "run_sizes"), [
    ("fast_scnn", (64, 128), [(224, 160), (96, 352)]),  # 1/32 maps 7x5 and 3x11
    ("icnet_liminn", (64, 64), [(72, 136), (112, 48)]),  # 1/32 maps 3x5 and 4x2
])
def test_dynamic_onnx_matches_pytorch_at_other_sizes(name, trace_size, run_sizes):
    ort = pytest.importorskip("onnxruntime")
    model = _model(name)
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.randn(1, 3, *trace_size),), buf, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
                      opset_version=17, dynamo=False)
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for h, w in run_sizes:
        x = torch.randn(1, 3, h, w)
        with torch.inference_mode():
            ref = model(x).numpy()
        (out,) = session.run(None, {"input": x.numpy()})
        assert out.shape == ref.shape == (1, 5, h, w)
        err = float(np.abs(out - ref).max())
        assert err <= 1e-4 * max(1.0, float(np.abs(ref).max())), f"{name} {h}x{w}: max |diff| {err:.3g}"
        assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.999
