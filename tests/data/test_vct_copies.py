"""VCT's 384-px copies (source "vct384"): the copies made the way VCT's generate_data_384
scripts make them read back as the same samples as the on-the-fly 384 path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avsbench.data import synthetic
from avsbench.data.datasets import build_dataset
from avsbench.data.extra_inputs import MASKIGE
from avsbench.data.layouts import AVSDataError, AVSSLayout, MS3Layout, S4Layout
from avsbench.data.transforms import normalize_pixels
from avsbench.data.vct_copies import AVSSCopies384, MS3Copies384, S4Copies384


def resized(src: Path, dst: Path, size: int, resample: Image.Resampling) -> None:
    """`resize_img` of generate_data_384/*.py: PIL resize to size x size, saved by suffix."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.open(src).resize((size, size), resample).save(dst)


def copy_object(setting: str, root: Path) -> None:
    """S4 / MS3 copies from the release's frames, maskiges and GT (the synthetic frames are
    the semantic ones: VCT reads them from AVSBench-semantic's v1s / v1m)."""
    import pandas as pd

    if setting == "s4":
        lay, copy = S4Layout(root), S4Copies384(root)
        meta = pd.read_csv(lay.meta_csv)
        clips = [((r.split, r.category, r.name), r.split) for r in meta.itertuples()]
    else:
        lay, copy = MS3Layout(root), MS3Copies384(root)
        meta = pd.read_csv(lay.meta_csv)
        clips = [((r.video_id,), r.split) for r in meta.itertuples()]
    for args, split in clips:
        for i in range(1, 6):
            frame = lay.frame(*args, i) if setting == "s4" else lay.frame(args[0], i)
            new = copy.frame(*args, i) if setting == "s4" else copy.frame(args[0], i)
            resized(frame, new, 384, Image.BILINEAR)
            resized(MASKIGE.path(lay, frame), MASKIGE.path(copy, new), 384, Image.NEAREST)
            mask = lay.mask(*args, i) if setting == "s4" else lay.mask(split, args[0], i)
            if mask.is_file():
                size = 384 if split == "train" else 224
                to = copy.mask(*args, i) if setting == "s4" else copy.mask(split, args[0], i)
                resized(mask, to, size, Image.NEAREST)


def copy_avss(root: Path) -> None:
    """ss_process.py: val/test frames to processed_frames_384 (jpg), maskiges NEAREST; the
    224 GT processed_labels_semantic of COMBO's process_avssimg2fixsize.py (NEAREST)."""
    import pandas as pd

    meta = pd.read_csv(root / "metadata.csv")
    lay = AVSSLayout(root)
    for row in meta[meta["split"] != "train"].itertuples():
        copy = AVSSCopies384(root, row.split)
        for k in range(10 if row.label == "v2" else 5):
            frame, new = lay.frame(row.label, row.uid, k), copy.frame(row.label, row.uid, k)
            resized(frame, new, 384, Image.BILINEAR)
            resized(MASKIGE.path(lay, frame), MASKIGE.path(copy, new), 384, Image.NEAREST)
            label = lay.label_semantic(row.label, row.uid, k)
            resized(label, copy.label_semantic(row.label, row.uid, k), 224, Image.NEAREST)


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy_vct")
    roots = synthetic.make_toy_data(out, seed=5, scale=0.02)
    copy_object("s4", roots["s4"])
    copy_object("ms3", roots["ms3"])
    copy_avss(roots["avss"])
    return roots


VCT = dict(image_size=384, eval_mask_size=224, extra_inputs=(MASKIGE,))


@pytest.mark.parametrize("setting", ["s4", "ms3"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_object_copies_give_the_samples_of_the_on_the_fly_path(copies, setting, split):
    root = copies[setting]
    from_copies = build_dataset(setting, root, split, source="vct384", **VCT)
    on_the_fly = build_dataset(setting, root, split, **VCT)
    assert len(from_copies) == len(on_the_fly)
    a, b = from_copies[0], on_the_fly[0]
    assert a["frames"].shape[-1] == a["maskige"].shape[-1] == 384
    assert a["masks"].shape[-1] == (384 if split == "train" else 224)
    for key in ("frames", "maskige", "masks", "audio", "gt_valid"):
        assert torch.equal(a[key], b[key]), key


def test_avss_copies_read_the_384_frames_and_224_labels(copies):
    root = copies["avss"]
    dataset = build_dataset("avss", root, "test", source="vct384", **VCT)
    reference = build_dataset("avss", root, "test", **VCT)
    a, b = dataset[0], reference[0]
    uid, label = dataset.rows[0]
    jpg = AVSSCopies384(root, "test").frame(label, uid, 1)
    assert jpg == root / label / uid / "processed_frames_384" / "1.jpg"
    pixels = np.asarray(Image.open(jpg).convert("RGB")).transpose(2, 0, 1)  # the JPEG as is
    assert torch.equal(a["frames"][1], torch.from_numpy(normalize_pixels(pixels)))
    for key in ("maskige", "masks", "audio", "frame_valid", "gt_valid"):
        assert torch.equal(a[key], b[key]), key
    train = build_dataset("avss", root, "train", source="vct384", **VCT)[0]
    assert train["frames"].shape[-1] == 384 and train["masks"].shape[-1] == 384


def test_copies_with_a_wrong_gt_size_or_no_maskige_name_the_file(copies, tmp_path):
    root = copies["s4"]
    dataset = build_dataset("s4", root, "test", source="vct384", **VCT)
    split, category, name = "test", dataset.rows[0][1], dataset.rows[0][0]
    gt = S4Copies384(root).mask(split, category, name, 2)
    assert gt == root / f"s4_data_384/gt_masks_224/test/{category}/{name}/{name}_2.png"
    saved = gt.read_bytes()
    Image.open(gt).resize((384, 384), Image.NEAREST).save(gt)
    with pytest.raises(AVSDataError, match=f"^{gt}: mask is 384x384 .* copies are 224x224"):
        dataset[0]
    gt.write_bytes(saved)
    frame = S4Copies384(root).frame(split, category, name, 4)
    maskige = root / f"s4_data_384/pre_SAM_mask_384/test/{category}/{name}/{name}_4_mask_color.png"
    assert MASKIGE.path(S4Copies384(root), frame) == maskige
    maskige.rename(tmp_path / "kept.png")
    with pytest.raises(AVSDataError, match=f"^{maskige}: missing maskige of frame {frame};"):
        dataset[0]
    (tmp_path / "kept.png").rename(maskige)
