"""`avsbench maskige` on VCT's 384-px copies and on AVSBench-semantic: a copy gets the maskige of
the frame it copies resized NEAREST to 384 (as VCT's generate_data_384 resizes them), AVSS
frames keep their own (non-square) size, and the loaders read both."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avsbench import cli
from avsbench.data.datasets import build_dataset
from avsbench.data.extra_inputs import MASKIGE
from avsbench.data.layouts import AVSSLayout, S4Layout
from avsbench.data.synthetic import make_toy_data
from avsbench.data.vct_copies import S4Copies384
from tests.data.test_vct_copies import copy_avss, copy_object
from tests.maskige.helpers import FLAGS, reference_generator, reference_ids


def ids_of(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.mark.slow
def test_s4_copies_get_the_maskige_of_their_frame_at_384(sam_file, tmp_path):
    make_toy_data(tmp_path, seed=0, scale=0.05, settings=("s4",), num_categories=3)
    root = tmp_path / "Single-source"
    copy_object("s4", root)
    lay, copies = S4Layout(root), S4Copies384(root)
    clip = sorted((lay.frames_root / "test").glob("*/*"))[0]  # one clip: 5 frames, 10 files
    relative = clip.relative_to(lay.frames_root)
    shutil.rmtree(root / "s4_data" / "pre_SAM_mask" / relative)
    shutil.rmtree(root / "s4_data_384" / "pre_SAM_mask_384" / relative)
    argv = ["maskige", str(tmp_path), "--sam_weights", str(sam_file), *FLAGS, "--quiet"]
    assert cli.main(argv) == 0  # the folder holding the root
    reference = reference_generator(sam_file)
    frames = sorted(clip.glob("*.png"))
    assert len(frames) == 5
    for frame in frames:
        original = ids_of(MASKIGE.path(lay, frame))
        expected = reference_ids(reference, np.asarray(Image.open(frame).convert("RGB")))
        np.testing.assert_array_equal(original, expected)
        copy_frame = copies.frames_root / frame.relative_to(lay.frames_root)
        copy = Image.open(MASKIGE.path(copies, copy_frame))
        assert copy.size == (384, 384)
        resized = Image.fromarray(expected).resize((384, 384), Image.NEAREST)
        np.testing.assert_array_equal(np.asarray(copy), np.asarray(resized))
    data = build_dataset(
        "s4", root, "test", image_size=384, eval_mask_size=224, source="vct384",
        extra_inputs=(MASKIGE,),
    )  # fmt: skip
    assert data[0]["maskige"].shape == (5, 3, 384, 384)


@pytest.mark.slow
def test_avss_frames_and_copies_keep_their_sizes(sam_file, tmp_path):
    make_toy_data(tmp_path, seed=0, scale=0.025, settings=("avss",), num_categories=3)
    root = tmp_path / "AVSBench_semantic"
    copy_avss(root)
    v2 = next(c for c in sorted(root.glob("v2/*")) if (c / "processed_frames_384").is_dir())
    # a 10-frame 256 x 192 val/test clip with VCT's copies
    label, uid = v2.parent.name, v2.name
    shutil.rmtree(MASKIGE.path(AVSSLayout(root), v2 / "frames" / "0.jpg").parent.parent)
    argv = ["maskige", str(root), "--sam_weights", str(sam_file), *FLAGS, "--quiet"]
    assert cli.main(argv) == 0
    reference = reference_generator(sam_file)
    lay = AVSSLayout(root)
    for k in range(10):
        frame = lay.frame(label, uid, k)
        made = Image.open(MASKIGE.path(lay, frame))
        assert made.size == Image.open(frame).size == (256, 192)
        expected = reference_ids(reference, np.asarray(Image.open(frame).convert("RGB")))
        np.testing.assert_array_equal(np.asarray(made), expected)
        copy_frame = v2 / "processed_frames_384" / f"{k}.jpg"
        copy = Image.open(MASKIGE.path(lay, copy_frame))
        resized = Image.fromarray(expected).resize((384, 384), Image.NEAREST)
        np.testing.assert_array_equal(np.asarray(copy), np.asarray(resized))
    split = _split_of(root, uid)
    data = build_dataset("avss", root, split, image_size=64, extra_inputs=(MASKIGE,))
    assert data[0]["maskige"].shape[1:] == (3, 64, 64)
    copies = build_dataset(
        "avss", root, split, image_size=384, eval_mask_size=224, source="vct384",
        extra_inputs=(MASKIGE,),
    )  # fmt: skip
    assert copies[0]["maskige"].shape[1:] == (3, 384, 384)


def _split_of(root: Path, uid: str) -> str:
    import pandas as pd

    meta = pd.read_csv(root / "metadata.csv")
    return str(meta[meta["uid"] == uid]["split"].iloc[0])
