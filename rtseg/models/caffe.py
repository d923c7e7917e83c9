"""Caffe ``.caffemodel`` files as checkpoints, read without Caffe.

A ``.caffemodel`` is one protobuf message, Caffe's ``NetParameter``. We describe the few fields a loader needs
(the field numbers are facts of Caffe's ``caffe.proto``) and let the ``protobuf`` package decode the wire format:

* ``NetParameter``: ``name`` (1), ``layer`` (100, LayerParameter) and the legacy ``layers`` (2, V1LayerParameter,
  which may nest a V0LayerParameter in field 1);
* a layer's ``name``, ``type`` and ``blobs``; the ``power_param`` of a Power layer (DIGITS' input shift);
* ``BlobProto``: ``shape`` (7) or the legacy 4-number ``num/channels/height/width`` (1-4), and ``data`` (5) or
  ``double_data`` (8). The data fields are packed repeated floats/doubles, which on the wire are one
  length-delimited record; described here as ``bytes`` they decode straight into NumPy, without a Python float
  per value (a VGG FCN holds 134 million of them).

Layer ``L``'s blobs become ``L.weight`` and ``L.bias``, the key names the FCN checkpoints use. Blobs are then
reshaped to the model's shapes where the element count and the output count agree: legacy shapes (a bias stored
as (1, 1, 1, N), an InnerProduct weight as (1, 1, out, in)) and the ImageNet net surgery (an InnerProduct fc6
(4096, 9216) becoming the convolution (4096, 256, 6, 6), row-major, as Caffe flattens pool5).
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass

import numpy as np

from ..errors import RtsegError

# The V1 LayerType enum values of the layers that carry parameters or preprocessing (caffe.proto).
_V1_TYPES = {4: "Convolution", 14: "InnerProduct", 39: "Deconvolution", 26: "Power", 15: "LRN", 17: "Pooling",
             18: "ReLU", 6: "Dropout", 5: "Data", 20: "Softmax", 21: "SoftmaxWithLoss"}
# The first bytes of a serialised NetParameter: field 1 (name), 2 (layers) or 100 (layer), each length-delimited.
_NET_TAGS = (b"\x0a", b"\x12", b"\xa2\x06")
_PROTOTXT = re.compile(rb"^\s*(name|layers?|input|input_shape|input_dim|force_backward|state)\s*[:{]")
_SHOW = 6


@dataclass
class CaffeLayer:
    name: str
    type: str
    blobs: list[np.ndarray]
    power: tuple[float, float, float] | None = None  # (power, scale, shift) of a Power layer


def caffe_file_kind(path) -> str | None:
    """``"caffemodel"``, ``"prototxt"`` (a Caffe net description, which holds no weights) or None.

    Decided by the file name's suffix, else by content: a prototxt is text starting with a NetParameter field;
    a caffemodel starts with the tag of field 1, 2 or 100 (PyTorch files start with ``PK`` or a pickle opcode).
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".prototxt", ".pbtxt"):
        return "prototxt"
    if suffix == ".caffemodel":
        return "caffemodel"
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    text = re.sub(rb"#[^\n]*", b"", head)  # prototxt comments
    if _PROTOTXT.match(text) and _is_text(head):
        return "prototxt"
    if head.startswith(_NET_TAGS) and not _is_text(head[:64]):
        return "caffemodel"
    return None


def read_caffemodel(path) -> tuple[str, list[CaffeLayer]]:
    """The net's name and its layers (with NumPy blobs in Caffe's shapes), in file order."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise RtsegError(f"checkpoint not found: {path}; pass the path of a .caffemodel file")
    if caffe_file_kind(path) == "prototxt":
        raise RtsegError(f"{path} is a Caffe net description (prototxt), which holds no weights; pass the"
                         f" .caffemodel file trained with it")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise RtsegError(f"cannot read {path}: {exc.strerror or exc}") from None
    net = _messages()["NetParameter"]()
    try:
        net.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError or a backend-specific error
        raise RtsegError(f"{path} is not a readable .caffemodel ({type(exc).__name__}: the file is truncated or"
                         f" not a Caffe NetParameter); download it again") from None
    del data
    layers = [_layer(layer.name, layer.type, layer.blobs, layer, "power_param", path) for layer in net.layer]
    for v1 in net.layers:
        if v1.HasField("layer"):  # V0: everything nested in field 1
            layers.append(_layer(v1.layer.name, v1.layer.type, v1.layer.blobs, None, "", path))
        else:
            kind = _V1_TYPES.get(v1.type, f"V1 type {v1.type}")
            layers.append(_layer(v1.name, kind, v1.blobs, v1, "power_param", path))
    if not any(layer.blobs for layer in layers):
        raise RtsegError(f"{path} holds no weights (no layer has blobs); is it a complete .caffemodel?")
    return net.name, layers


def caffemodel_state_dict(path, model) -> dict:
    """Read ``path`` as a checkpoint for ``model``: keys ``L.weight``/``L.bias``, shapes fitted to the model.

    A Power layer before the first weighted layer is input preprocessing; it is recorded on the model as
    ``checkpoint_preprocessing`` (raw BGR pixels, ``(x - mean) / std``), never folded into the weights.
    """
    import torch

    net_name, layers = read_caffemodel(path)
    state = {}
    for layer in layers:
        for i, blob in enumerate(layer.blobs):
            key = f"{layer.name}.{('weight', 'bias')[i] if i < 2 else f'blob{i}'}"
            state[key] = torch.from_numpy(blob)
    _record_input_shift(model, layers)
    adapt = getattr(model, "adapt_checkpoint", None)
    if adapt is not None:
        state = adapt(state)

    own = model.state_dict()
    _check_layers(path, net_name, model, state, own)
    for key, value in state.items():
        target = own.get(key)
        if target is not None and tuple(value.shape) != tuple(target.shape) and _same_layout(value, target):
            state[key] = value.reshape(target.shape)
    return state


def _same_layout(blob, target) -> bool:
    """Whether a blob is the target in another shape: same count and same leading (output) size once the
    legacy leading 1s are dropped."""
    dims = list(blob.shape)
    while len(dims) > 1 and dims[0] == 1:
        dims.pop(0)
    return blob.numel() == target.numel() and target.dim() > 0 and dims[0] == target.shape[0]


def _check_layers(path, net_name, model, state, own) -> None:
    """A .caffemodel of another network: one line naming the layers that differ."""
    ours = {k.rsplit(".", 1)[0] for k in own}
    theirs = {k.rsplit(".", 1)[0] for k in state}
    missing, extra = sorted(ours - theirs), sorted(theirs - ours)
    if not missing:
        return
    name = getattr(model, "model_name", "") or type(model).__name__

    def listing(names):
        return ", ".join(names[:_SHOW]) + (f" (+{len(names) - _SHOW} more)" if len(names) > _SHOW else "")

    net = f" (net {net_name!r})" if net_name else ""
    parts = [f"{len(missing)} layers missing: {listing(missing)}"]
    if extra:
        parts.append(f"{len(extra)} layers it has that {name} lacks: {listing(extra)}")
    raise RtsegError(f"{path}{net} is not a {name} caffemodel: {'; '.join(parts)}; check --model")


def _record_input_shift(model, layers) -> None:
    for layer in layers:
        if layer.blobs:
            return
        if layer.type == "Power" and layer.power is not None:
            power, scale, shift = layer.power
            if power != 1.0 or scale == 0.0:
                raise RtsegError(f"Power layer {layer.name!r} computes ({shift} + {scale}x)^{power}; only an"
                                 f" affine input shift (power 1) can be recorded as preprocessing")
            # scale * x + shift == (x - mean) / std with std = 1 / scale, mean = -shift / scale
            model.checkpoint_preprocessing = {"mean": (-shift / scale,) * 3, "std": (1.0 / scale,) * 3,
                                              "channel_order": "BGR", "value_scale": 255.0}
            return


def _layer(name, kind, blobs, params, power_field, path) -> CaffeLayer:
    arrays = [_blob(b, f"{name}[{i}]", path) for i, b in enumerate(blobs)]
    power = None
    if params is not None and power_field and params.HasField(power_field):
        p = getattr(params, power_field)
        power = (float(p.power), float(p.scale), float(p.shift))
    return CaffeLayer(str(name), str(kind), arrays, power)


def _blob(blob, label: str, path) -> np.ndarray:
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:  # legacy num/channels/height/width; unset numbers read as 0 and mean "no such axis"
        shape = tuple(int(d) for d in (blob.num, blob.channels, blob.height, blob.width) if d) or (0,)
    if blob.data:
        values = np.frombuffer(b"".join(blob.data), dtype="<f4")
    elif blob.double_data:
        values = np.frombuffer(b"".join(blob.double_data), dtype="<f8").astype(np.float32)
    else:
        values = np.zeros(0, np.float32)
    if values.size == 0 and math.prod(shape) > 0:
        raise RtsegError(f"{path}: blob {label} has the shape {shape} but no float or double data (NVIDIA Caffe"
                         f" 0.16+ can store raw half-precision data, which is not read here); save float blobs")
    if values.size != math.prod(shape):
        raise RtsegError(f"{path}: blob {label} holds {values.size} values but its shape {shape} needs"
                         f" {math.prod(shape)}; the file is damaged, download it again")
    return values.reshape(shape).astype(np.float32)  # a writable copy in native byte order


@functools.cache
def _messages() -> dict:
    """Message classes for the subset of caffe.proto described in the module docstring."""
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ModuleNotFoundError:
        from ..errors import missing_dependency

        raise missing_dependency("protobuf", "export") from None

    F = descriptor_pb2.FieldDescriptorProto
    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    scalar = {"string": F.TYPE_STRING, "bytes": F.TYPE_BYTES, "int64": F.TYPE_INT64, "int32": F.TYPE_INT32,
              "float": F.TYPE_FLOAT}
    messages = {
        "BlobShape": [("dim", 1, many, "int64")],
        "BlobProto": [("shape", 7, one, "BlobShape"), ("data", 5, many, "bytes"), ("double_data", 8, many, "bytes"),
                      ("num", 1, one, "int64"), ("channels", 2, one, "int64"), ("height", 3, one, "int64"),
                      ("width", 4, one, "int64")],
        "PowerParameter": [("power", 1, one, "float", "1"), ("scale", 2, one, "float", "1"),
                           ("shift", 3, one, "float", "0")],
        "LayerParameter": [("name", 1, one, "string"), ("type", 2, one, "string"), ("blobs", 7, many, "BlobProto"),
                           ("power_param", 122, one, "PowerParameter")],
        "V0LayerParameter": [("name", 1, one, "string"), ("type", 2, one, "string"),
                             ("blobs", 50, many, "BlobProto")],
        "V1LayerParameter": [("layer", 1, one, "V0LayerParameter"), ("name", 4, one, "string"),
                             ("type", 5, one, "int32"), ("blobs", 6, many, "BlobProto"),
                             ("power_param", 21, one, "PowerParameter")],
        "NetParameter": [("name", 1, one, "string"), ("layers", 2, many, "V1LayerParameter"),
                         ("layer", 100, many, "LayerParameter")],
    }
    proto = descriptor_pb2.FileDescriptorProto(name="rtseg_caffe_subset.proto", package="rtseg_caffe",
                                               syntax="proto2")
    for message, fields in messages.items():
        desc = proto.message_type.add(name=message)
        for name, number, label, kind, *default in fields:
            field = desc.field.add(name=name, number=number, label=label)
            if kind in scalar:
                field.type = scalar[kind]
            else:
                field.type, field.type_name = F.TYPE_MESSAGE, f".rtseg_caffe.{kind}"
            if default:
                field.default_value = default[0]
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"rtseg_caffe.{name}"))
            for name in messages}


def _is_text(data: bytes) -> bool:
    """UTF-8 without control characters other than tab and newlines (a protobuf binary has tags and lengths)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start <= len(data) - 4:  # not just a multi-byte character cut by the read
            return False
    return not any(b < 32 and b not in (9, 10, 13) for b in data)
