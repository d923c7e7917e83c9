"""Write Caffe ``.caffemodel`` files for the tests, through rtseg's own description of the NetParameter subset.

The data fields are written as the packed records Caffe writes (see rtseg/models/caffe.py);
test_caffe.py checks that description against an independent one that types them as packed floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtseg.models.caffe import _messages

V1_TYPES = {"Convolution": 4, "InnerProduct": 14, "Deconvolution": 39, "Power": 26, "ReLU": 18, "Scale": 0}


@dataclass
class Layer:
    name: str
    type: str
    blobs: list = field(default_factory=list)  # numpy arrays, written in their own shapes
    shift: float | None = None  # a Power layer's shift


def write_caffemodel(path: Path, layers: list[Layer], name: str = "", legacy: bool = False) -> Path:
    """``legacy``: V1 ``layers`` with the 4-number num/channels/height/width blob dims (pre-2015 files)."""
    messages = _messages()
    net = messages["NetParameter"](name=name)
    for layer in layers:
        entry = net.layers.add(name=layer.name, type=V1_TYPES[layer.type]) if legacy else \
            net.layer.add(name=layer.name, type=layer.type)
        if layer.shift is not None:
            entry.power_param.shift = layer.shift
        for array in layer.blobs:
            array = np.ascontiguousarray(array, dtype="<f4")
            blob = entry.blobs.add()
            if legacy:
                dims = (1,) * (4 - array.ndim) + array.shape
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.dim.extend(array.shape)
            blob.data.append(array.tobytes())
    path.write_bytes(net.SerializeToString())
    return path


def layers_from_state_dict(state: dict) -> list[Layer]:
    """One Caffe layer per ``L.weight``/``L.bias`` pair, in key order (all typed Convolution: only names count)."""
    layers: dict[str, Layer] = {}
    for key, value in state.items():
        name, _ = key.rsplit(".", 1)
        layers.setdefault(name, Layer(name, "Convolution")).blobs.append(value.numpy())
    return list(layers.values())
