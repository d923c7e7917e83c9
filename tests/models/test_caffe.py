"""Reading Caffe files: the wire format as Caffe writes it, the VGG FCNs' Caffe files, and bad input in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtseg.cli import main
from rtseg.errors import RtsegError
from rtseg.models import create_model
from rtseg.models.caffe import caffe_file_kind, read_caffemodel

from .caffe_files import Layer, layers_from_state_dict, write_caffemodel
from .reference import manifest


def _caffe_typed_messages():
    """An independent description with caffe.proto's own types: data as ``repeated float [packed = true]``,
    dims as packed int64, and V1 layers typed by their enum (what Caffe's generated classes write)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="caffe_typed.proto", package="caffe_typed", syntax="proto2")

    def message(name, *fields):
        desc = proto.message_type.add(name=name)
        for fname, number, label, ftype, type_name, packed in fields:
            f = desc.field.add(name=fname, number=number, label=label, type=ftype)
            if type_name:
                f.type_name = f".caffe_typed.{type_name}"
            if packed:
                f.options.packed = True

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BlobShape", ("dim", 1, rep, F.TYPE_INT64, None, True))
    message("BlobProto", ("shape", 7, opt, F.TYPE_MESSAGE, "BlobShape", False),
            ("data", 5, rep, F.TYPE_FLOAT, None, True), ("num", 1, opt, F.TYPE_INT64, None, False),
            ("channels", 2, opt, F.TYPE_INT64, None, False), ("height", 3, opt, F.TYPE_INT64, None, False),
            ("width", 4, opt, F.TYPE_INT64, None, False))
    message("LayerParameter", ("name", 1, opt, F.TYPE_STRING, None, False),
            ("type", 2, opt, F.TYPE_STRING, None, False), ("blobs", 7, rep, F.TYPE_MESSAGE, "BlobProto", False))
    message("NetParameter", ("name", 1, opt, F.TYPE_STRING, None, False),
            ("layer", 100, rep, F.TYPE_MESSAGE, "LayerParameter", False))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe_typed.{n}"))
            for n in ("NetParameter",)}


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A small network of another kind (VGG-style names), written as Caffe's own classes would write it."""
    rng = np.random.default_rng(0)
    blobs = {"conv1_1": [rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)],
             "conv1_2": [rng.standard_normal((4, 4, 3, 3)), rng.standard_normal(4)],
             "fc8": [rng.standard_normal((10, 64)), rng.standard_normal(10)]}
    net = _caffe_typed_messages()["NetParameter"](name="VGG_tiny")
    for name, arrays in blobs.items():
        layer = net.layer.add(name=name, type="Convolution")
        for a in arrays:
            blob = layer.blobs.add()
            blob.shape.dim.extend(a.shape)
            blob.data.extend(a.astype(np.float32).ravel().tolist())
    path = tmp_path_factory.mktemp("caffe") / "vgg_tiny.caffemodel"
    path.write_bytes(net.SerializeToString())
    return path, blobs


def test_reads_caffes_packed_floats(vgg_file):
    path, blobs = vgg_file
    name, layers = read_caffemodel(path)
    assert name == "VGG_tiny"
    assert [layer.name for layer in layers] == list(blobs)
    for layer in layers:
        for ours, ref in zip(layer.blobs, blobs[layer.name], strict=True):
            assert ours.dtype == np.float32 and ours.shape == ref.shape
            assert np.array_equal(ours, ref.astype(np.float32))


def _one_line_error(call) -> str:
    with pytest.raises(RtsegError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_caffemodel_of_another_network_names_the_layers(vgg_file):
    message = _one_line_error(lambda: create_model("fcn_alexnet", checkpoint=vgg_file[0]))
    assert "'VGG_tiny'" in message and "conv1, conv2" in message and "conv1_1, conv1_2, fc8" in message


def test_truncated_caffemodel(vgg_file, tmp_path):
    data = vgg_file[0].read_bytes()
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(data[:len(data) - 100])
    assert "truncated" in _one_line_error(lambda: read_caffemodel(cut))


def test_prototxt_passed_as_weights(tmp_path, capsys):
    proto = tmp_path / "deploy.txt"  # named neither .prototxt nor .caffemodel: recognised by its content
    proto.write_text('# FCN-AlexNet\nname: "fcn_alexnet"\ninput: "data"\nlayer {\n  name: "conv1"\n}\n')
    assert caffe_file_kind(proto) == "prototxt"
    message = _one_line_error(lambda: create_model("fcn_alexnet", checkpoint=proto))
    assert "prototxt" in message and ".caffemodel" in message
    # On the command line: one line, before anything is written.
    out = tmp_path / "bundle"
    assert main(["export", "--model", "fcn_alexnet", "--weights", str(proto), "--input-size", "32x32",
                 "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("rtseg: error:") and "prototxt" in err and "\n" not in err
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.heavy
def test_vgg_fcn_caffemodel_and_the_at_once_scale_layers(reference_dir, tmp_path):
    """FCN-8s at-once's Caffe file keeps its skip scales as Scale layers: it loads into fcn8s_atonce_vgg16 and is
    refused by fcn8s_vgg16, which would otherwise run it without them."""
    generator = torch.Generator().manual_seed(0)
    state = {e["key"]: torch.randn(e["shape"], generator=generator)
             for e in manifest(reference_dir, "fcn8s_atonce_vgg16")["state_dict"]}
    layers = layers_from_state_dict(state)
    layers.insert(10, Layer("scale_pool3", "Scale", [np.full(256, 1e-4, np.float32)]))
    layers.insert(14, Layer("scale_pool4", "Scale", [np.full(512, 0.01, np.float32)]))
    path = write_caffemodel(tmp_path / "fcn8s-atonce-pascal.caffemodel", layers, name="FCN8s-atonce")
    loaded = create_model("fcn8s_atonce_vgg16", checkpoint=path)
    for key, value in loaded.state_dict().items():
        assert torch.equal(state[key], value), key
    message = _one_line_error(lambda: create_model("fcn8s_vgg16", checkpoint=path))
    assert "fcn8s_atonce_vgg16" in message
