"""How `avsbench evaluate` reads one predicted mask file (`avsbench.prediction_files`):
binary, probability and index PNGs and .npy maps, written to disk and read back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from avsbench import prediction_files as P
from avsbench.errors import InputError
from avsbench.visualize import save_palette_mask


def _png(path, values, mode="L"):
    Image.fromarray(np.asarray(values, dtype=np.uint8), mode=mode).save(path)
    return path


def test_probability_png_is_value_over_255(tmp_path):
    values = np.array([[0, 64, 128], [191, 255, 255], [0, 0, 0]])
    logits = P.read_binary(_png(tmp_path / "p.png", values), set(), 3)
    prob = torch.sigmoid(logits).numpy()
    np.testing.assert_allclose(prob[0, 1:], [64 / 255, 128 / 255], atol=1e-6)
    # 255 and 0: logits +-30, p = 1.0 and p below the first threshold above 0 (1 / 254)
    assert prob[1, 1] == 1.0 and 0 <= prob[0, 0] < 1e-12


@pytest.mark.parametrize("high", [1, 255])
def test_binary_png_0_1_or_0_255_is_a_hard_mask(tmp_path, high):
    values = np.array([[0, high], [high, 0]])
    logits = P.read_binary(_png(tmp_path / "m.png", values), set(), 2)
    assert logits.tolist() == [[-30.0, 30.0], [30.0, -30.0]]


def test_other_sizes_are_resized_by_nearest_neighbour(tmp_path):
    values = np.zeros((4, 6), np.uint8)
    values[:, 3:] = 255
    logits = P.read_binary(_png(tmp_path / "m.png", values), {(6, 4)}, 3)  # (w, h) allowed
    # PIL samples pixel centres: output x reads input floor((x + 0.5) * 2) = 1, 3, 5
    assert (logits > 0).long().tolist() == [[0, 1, 1]] * 3


def test_avss_palette_png_gives_the_class_ids_back(tmp_path):
    ids = np.array([[0, 5, 70], [12, 12, 0], [1, 2, 3]])
    path = save_palette_mask(ids, tmp_path / "0.png")
    assert Image.open(path).mode == "P"
    assert P.read_class_ids(path, set(), 3, 71).tolist() == ids.tolist()


def test_avss_colour_png_is_decoded_by_the_avsbench_palette(tmp_path):
    from avsbench.data.palette import encode_color_mask

    ids = np.array([[0, 5, 70], [12, 12, 0], [1, 2, 3]])
    path = tmp_path / "0.png"
    Image.fromarray(encode_color_mask(ids), mode="RGB").save(path)
    assert P.read_class_ids(path, set(), 3, 71).tolist() == ids.tolist()


def test_avss_colour_outside_the_palette_and_rgba_are_refused(tmp_path):
    rgb = np.zeros((3, 3, 3), np.uint8)
    rgb[1, 2] = (1, 2, 3)
    path = tmp_path / "0.png"
    Image.fromarray(rgb, mode="RGB").save(path)
    with pytest.raises(InputError, match=r"0\.png: pixel \(x=2, y=1\) has colour \(1, 2, 3\)"):
        P.read_class_ids(path, set(), 3, 71)
    Image.fromarray(np.zeros((3, 3, 4), np.uint8), mode="RGBA").save(path)
    with pytest.raises(InputError, match=r"0\.png: an image of mode RGBA.*index, palette"):
        P.read_class_ids(path, set(), 3, 71)


def test_npy_outside_0_1_is_refused(tmp_path):
    path = tmp_path / "m.npy"
    np.save(path, np.array([[0.5, -0.1]], dtype=np.float32))
    with pytest.raises(InputError, match=r"m\.npy: wrong value range"):
        P.read_binary(path, set(), 2)
