"""AVSS classes, palette and colour-mask decoding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avsbench.data import palette as pal
from avsbench.data.layouts import AVSDataError


def test_class_names():
    assert len(pal.CLASS_NAMES) == 71 and len(set(pal.CLASS_NAMES)) == 71
    assert pal.CLASS_NAMES[0] == "background" and pal.CLASS_NAMES[-1] == "woman"
    assert pal.CLASS_NAMES[22] == "emergency-car" and pal.CLASS_NAMES[41] == "man"


def test_palette_examples_and_uniqueness():
    p = pal.palette()
    assert p.dtype == np.uint8 and p.shape == (71, 3)
    assert p[0].tolist() == [0, 0, 0]
    assert p[1].tolist() == [128, 0, 0]
    assert p[2].tolist() == [0, 128, 0]
    assert p[3].tolist() == [128, 128, 0]
    assert p[4].tolist() == [0, 0, 128]
    assert p[70].tolist() == [32, 128, 128]
    assert len({tuple(c) for c in p.tolist()}) == 71


def test_decode_encode_round_trip():
    ids = np.random.default_rng(0).integers(0, 71, size=(37, 53))
    rgb = pal.encode_color_mask(ids)
    assert rgb.shape == (37, 53, 3) and rgb.dtype == np.uint8
    back = pal.decode_color_mask(rgb)
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, ids)


def test_decode_matches_bruteforce():
    """Exact-match decoding, computed pixel by pixel with a dict."""
    ids = np.random.default_rng(1).integers(0, 71, size=(9, 11))
    rgb = pal.PALETTE[ids]
    lookup = {tuple(c): j for j, c in enumerate(pal.PALETTE.tolist())}
    expected = np.array([[lookup[tuple(px)] for px in row] for row in rgb.tolist()])
    np.testing.assert_array_equal(pal.decode_color_mask(rgb), expected)


def test_unknown_colour_names_file_and_colour():
    rgb = pal.encode_color_mask(np.zeros((4, 5), dtype=int))
    rgb[2, 3] = (1, 2, 3)
    with pytest.raises(AVSDataError, match=r"m\.png.*x=3, y=2.*\(1, 2, 3\)"):
        pal.decode_color_mask(rgb, path="m.png")
    # a near-miss (JPEG-like) colour is not rounded to the nearest palette entry
    rgb[2, 3] = (127, 0, 0)
    with pytest.raises(AVSDataError, match=r"\(127, 0, 0\)"):
        pal.decode_color_mask(rgb, path="m.png")


def test_read_label2idx(tmp_path):
    p = tmp_path / "label2idx.json"
    pal.write_label2idx(p)
    raw = json.loads(p.read_text())
    assert raw["background"] == 1 and raw["woman"] == 71
    mapping = pal.read_label2idx(p)
    assert mapping["background"] == 0 and mapping["woman"] == 70
    assert [mapping[n] for n in pal.CLASS_NAMES] == list(range(71))
    p.write_text(json.dumps({"background": 0, "dog": 1}))
    with pytest.raises(AVSDataError, match="1..2"):
        pal.read_label2idx(p)
    with pytest.raises(AVSDataError, match="not found"):
        pal.read_label2idx(tmp_path / "missing.json")
