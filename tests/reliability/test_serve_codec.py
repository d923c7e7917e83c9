"""Case 7: rtseg serve reads an image's header before decoding it: a frame larger than --max-frame is a 413 without
a pixel decoded (a PNG whose header says 20000x20000 and whose pixels are missing would otherwise be a 400 from
the decoder, after it tried)."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from rtseg.serve.codec import BadRequest, decode_frame


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(height: int, width: int) -> bytes:
    """A well-formed PNG stating ``height`` x ``width`` RGB whose pixel data stops after two rows (a small body
    that claims a huge frame): its header says everything the service needs."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (2 * (1 + 3 * width)))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


@pytest.mark.parametrize("hw, words", [((20000, 20000), "pixels"), ((5000, 9000), "5000x9000"),
                                       ((100, 8000), "100x8000")])
def test_a_frame_too_large_by_its_header_is_413_before_decoding(hw, words):
    with pytest.raises(BadRequest) as info:
        decode_frame(png_header_only(*hw), None)
    assert info.value.status == 413 and words in str(info.value) and "--max-frame" in str(info.value)


def test_a_frame_within_the_limit_still_decodes_and_a_missing_body_is_a_400():
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    for ext in (".png", ".jpg", ".bmp"):
        ok, data = cv2.imencode(ext, frame)
        assert decode_frame(data.tobytes(), None).shape == (48, 64, 3)
    with pytest.raises(BadRequest) as info:  # header fine, pixels missing: the decoder's 400
        decode_frame(png_header_only(48, 64), None)
    assert info.value.status == 400
    with pytest.raises(BadRequest) as info:
        decode_frame(cv2.imencode(".png", frame)[1].tobytes(), None, max_frame=(32, 32))
    assert info.value.status == 413 and "48x64" in str(info.value)
