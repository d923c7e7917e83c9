"""The README written into a Triton model directory: how Triton serves the model, and the client's share of the work.

The graph stops before the final upsample (or, with ``--head labels``, returns labels); preprocessing and, for
logits, the bilinear upsample + argmax happen in the client, exactly as rtseg's runtime does them.
"""

from __future__ import annotations


def readme_text(model, manifest: dict) -> str:
    inp, out = manifest["input"], manifest["output"]
    names = manifest["model"]["class_names"]
    size = (f"any H x W from {inp['profile']['min'][2]}x{inp['profile']['min'][3]} to"
            f" {inp['profile']['max'][2]}x{inp['profile']['max'][3]} (multiples of {inp.get('size_multiple', 1)};"
            f" tuned for {inp['profile']['opt'][2]}x{inp['profile']['opt'][3]})" if inp.get("profile")
            else f"{inp['shape'][2]}x{inp['shape'][3]} exactly")
    if model.max_batch_size:
        batching = (f"`max_batch_size: {model.max_batch_size}` with dynamic batching (requests wait up to"
                    f" {model.queue_delay_us} µs to be stacked). Each request carries a batch axis (usually"
                    " 1, as below); Triton stacks requests into one inference call.")
    else:
        batching = (f"`max_batch_size: 0`: Triton does not batch this model ({model.batch_reason}); each request"
                    " carries the full shape with batch 1. Add instances (`instance_group { count: N }`) for"
                    " throughput.")
    if out["kind"] == "logits":
        up = out["upsample"]
        post = (f"The output `{out['name']}` is low-resolution logits `(N, {manifest['model']['num_classes']}, h, w)`."
                f" The client still owes the **upsample + argmax**: bilinear interpolation to the frame's size"
                f" (`align_corners={up['align_corners']}`), then the class with the highest score at each pixel"
                f" (ties to the lower class index). With rtseg installed this is one fused call:\n\n"
                f"```python\nfrom rtseg.kernels import upsample_argmax\n"
                f"labels = upsample_argmax(logits, (frame_h, frame_w), align_corners={up['align_corners']})"
                f"  # (N, H, W) uint8\n```\n\n"
                f"and in plain PyTorch: `F.interpolate(torch.from_numpy(logits), (frame_h, frame_w),"
                f" mode=\"bilinear\", align_corners={up['align_corners']}).argmax(1)`.")
    else:
        post = (f"The output `{out['name']}` is class ids `(N, H, W)` ({out['dtype']}) at the input size; resize them"
                " to the frame with nearest-neighbour interpolation.")
    order = inp.get("channel_order", "RGB")
    mean, std, scale = inp["mean"], inp["std"], inp.get("value_scale", 1.0)
    rgb = order == "RGB"
    return f"""# {model.name}: Triton model

Written by `rtseg triton` from an rtseg bundle ({manifest['model']['name']}, {manifest['model']['num_classes']}
classes). `rtseg.json` beside this file is the bundle manifest: class names, palette, normalisation, checksums.

## Serving

    tritonserver --model-repository=<the folder holding this one>

Platform `{model.platform}`, file `1/{model.model_file}` (the bundle's `{model.graph}` artifact).
{batching}
{"On a GPU, ONNX Runtime hands the graph to TensorRT with the optimisation profile in config.pbtxt"
 " (`trt_profile_*_shapes`, FP16); on a CPU-only server that section is ignored." if model.platform ==
 "onnxruntime_onnx" else "The engine's optimisation profile 0 is used; the engine only runs on the GPU model and"
 " TensorRT version it was built with (see `build` in rtseg.json)."}

## The client

Input `{model.input_name}`: float32 NCHW, {size}. From a BGR uint8 frame: resize to the input size (bilinear),
{"convert BGR to RGB, " if rgb else "keep BGR, "}divide by {255.0 / scale:g}, subtract mean {mean} and divide by
std {std} per channel ({order} order), transpose to (1, 3, H, W).

{post}

```python
import numpy as np, tritonclient.http as httpclient
from rtseg.kernels import preprocess
client = httpclient.InferenceServerClient("localhost:8000")
x = preprocess(frame_bgr, (H, W), {tuple(mean)}, {tuple(std)}, rgb={rgb}, pixel_range={255.0 / scale:g})  # (1, 3, H, W)
inp = httpclient.InferInput("{model.input_name}", list(x.shape), "FP32"); inp.set_data_from_numpy(x)
out = client.infer("{model.name}", [inp]).as_numpy("{out['name']}")
```

Classes ({len(names)}): {", ".join(f"{i} {n}" for i, n in enumerate(names))}.
"""
