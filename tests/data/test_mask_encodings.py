"""Ground-truth masks in other encodings than 0/255 grey (docs/RELIABILITY.md, "Inputs
validated when read"): read with the published threshold (grey >= 128) as before, but a
warning naming the file, once per file; --strict_masks makes it an error."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from avsbench.data import dataset_base as D
from avsbench.data.datasets import S4Dataset
from avsbench.data.layouts import AVSDataError
from tests.data.avs_fixtures import square_mask


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(D, "_warned_masks", set())


def _train_mask(root):
    return root / "s4_data/gt_masks/train/dog_barking/vidTrain0001/vidTrain0001_1.png"


def _encodings() -> dict[str, tuple[Image.Image, str | None]]:
    fg = square_mask(1) > 0  # [S, S] bool
    s = fg.shape
    rgb = np.zeros((*s, 3), np.uint8)
    rgb[fg] = (255, 0, 0)
    rgba = np.zeros((*s, 4), np.uint8)
    rgba[..., 3] = fg * 255
    grey = (fg * 255).astype(np.uint8)
    return {
        "zero_one": (Image.fromarray(fg.astype(np.uint8), "L"), "maximum is 1 < 128"),
        "coloured": (Image.fromarray(rgb, "RGB"), "coloured"),
        "alpha": (Image.fromarray(rgba, "RGBA"), "alpha channel"),
        "published": (Image.fromarray(grey, "L"), None),
        "grey_rgb": (Image.fromarray(np.repeat(grey[..., None], 3, -1), "RGB"), None),
        "all_zero": (Image.fromarray(np.zeros(s, np.uint8), "L"), None),
    }


@pytest.mark.parametrize("name", list(_encodings()))
def test_other_encodings_warn_once_naming_the_file(s4_root, caplog, name):
    image, problem = _encodings()[name]
    path = _train_mask(s4_root)
    image.save(path)
    expected = (np.asarray(image.convert("L")) >= 128).astype(np.float32)  # published rule
    dataset = S4Dataset(s4_root, "train", image_size=224)
    with caplog.at_level(logging.WARNING, logger="avsbench"):
        first = dataset[0]["masks"][0]
        dataset[0]
    np.testing.assert_array_equal(first, expected)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if problem is None:
        assert warnings == []
        return
    assert len(warnings) == 1 and warnings[0].startswith(f"{path}: ") and problem in warnings[0]
    assert f"gives {int(expected.sum())} foreground pixels" in warnings[0]
    assert "--strict_masks" in warnings[0]
    strict = S4Dataset(s4_root, "train", image_size=224, strict_masks=True)
    with pytest.raises(AVSDataError, match=rf"{path.name}: .*{problem}.*--strict_masks"):
        strict[0]


def test_strict_masks_flag_reaches_the_dataset(s4_root):
    from avsbench.engine import options as O
    from avsbench.engine.user_config import UserConfig

    args = O.build_train_parser("s4").parse_args(["--strict_masks"])
    assert O.model_overrides(args, UserConfig("s4"))["data.strict_masks"] is True
