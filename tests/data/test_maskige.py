"""Maskiges as data: the ADE20K palette PNGs read exactly, the painting rule, the errors
for missing or mis-sized files, the synthetic maskiges, and VCT's 384-px inputs with 224-px
evaluation masks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from avsbench.data import synthetic
from avsbench.data.ade20k_palette import ADE20K_PALETTE
from avsbench.data.audio import load_log_mel
from avsbench.data.datasets import build_dataset
from avsbench.data.extra_inputs import MASKIGE, read_extra
from avsbench.data.layouts import AVSDataError, AVSSLayout, MS3Layout, S4Layout
from avsbench.data.maskige import maskige_colours, paint_maskige, write_maskige
from avsbench.data.synthetic_scene import segment_masks
from avsbench.data.transforms import normalize_pixels


def encoded(rgb: np.ndarray) -> torch.Tensor:
    """uint8 RGB [H, W, 3] -> the sample value of a maskige, float32 [3, H, W]."""
    return torch.from_numpy(normalize_pixels(rgb.transpose(2, 0, 1)))


# ---------------------------------------------------------------------------------------
# The palette and the painting rule
# ---------------------------------------------------------------------------------------
def test_palette_is_the_published_table():
    assert ADE20K_PALETTE.shape == (150, 3) and ADE20K_PALETTE.dtype == np.uint8
    # spec "Inputs": id 0 = (120,120,120), 1 = (180,120,120), 2 = (6,230,230); last entry
    # and column sums read off COMBO's ade_palette()
    assert ADE20K_PALETTE[:3].tolist() == [[120, 120, 120], [180, 120, 120], [6, 230, 230]]
    assert ADE20K_PALETTE[149].tolist() == [92, 0, 255]
    assert ADE20K_PALETTE.astype(int).sum(axis=0).tolist() == [17965, 20212, 20250]


def test_a_pil_palette_png_is_read_exactly_as_rgb(tmp_path):
    """A mode-P PNG written by PIL with the ADE palette (as COMBO's script writes it) reads
    back through its palette: id k -> ADE20K_PALETTE[k]; ids past 150 read as black."""
    ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = tmp_path / "0_mask_color.png"
    image = Image.fromarray(ids, mode="L")
    image.putpalette([int(v) for v in ADE20K_PALETTE.reshape(-1)])  # a flat list, like COMBO
    image.save(path)
    assert Image.open(path).mode == "P"
    frame = Image.new("RGB", (16, 16))
    rgb = np.asarray(read_extra(MASKIGE, path, frame, tmp_path / "0.jpg"))
    expected = np.zeros((256, 3), np.uint8)
    expected[:150] = ADE20K_PALETTE
    assert np.array_equal(rgb, expected[ids])
    assert np.array_equal(maskige_colours(ids), expected[ids])
    write_maskige(tmp_path / "ours.png", ids)  # our writer: the same pixels and palette
    ours = Image.open(tmp_path / "ours.png")
    assert ours.mode == "P" and np.array_equal(np.asarray(ours), ids)
    assert np.array_equal(np.asarray(ours.convert("RGB")), rgb)


def published_painting(masks: np.ndarray) -> np.ndarray:
    """mask_precess_*.py's loop: sort by area, m = first mask, then id idx + 1 where m is 0."""
    ranked = masks.astype(np.uint8)[np.argsort(masks.sum(axis=(1, 2)), kind="stable")]
    m = ranked[0]
    for idx in range(1, len(ranked)):
        m = np.where(m == 0, ranked[idx] * (idx + 1), m)
    return m.astype(np.uint8)


def test_painting_puts_the_smallest_mask_on_top():
    masks = np.zeros((3, 6, 8), dtype=bool)
    masks[0, :, :] = True  # the whole frame (48 px), given first
    masks[1, 1:5, 1:7] = True  # 24 px
    masks[2, 2:4, 2:4] = True  # 4 px, inside the others
    ids = paint_maskige(masks)
    assert ids[2, 2] == 1 and ids[1, 1] == 2 and ids[0, 0] == 3
    assert np.array_equal(np.unique(ids), [1, 2, 3])
    assert np.array_equal(paint_maskige(masks[1:]), np.where(masks[1], 2, 0) - masks[2])
    rng = np.random.default_rng(0)
    for n in (1, 5, 40):
        masks = rng.random((n, 20, 30)) < rng.uniform(0.02, 0.6, size=(n, 1, 1))
        assert np.array_equal(paint_maskige(masks), published_painting(masks))
    assert np.array_equal(paint_maskige(np.zeros((0, 4, 5), bool)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="at most 255"):
        paint_maskige(np.zeros((256, 2, 2), bool))


# ---------------------------------------------------------------------------------------
# Missing and mis-sized files, Semantic-SAM's size (real files)
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A tiny synthetic AVSBench with its maskiges (seed 3, scale 0.02: ~5 s)."""
    out = tmp_path_factory.mktemp("toy_maskige")
    return synthetic.make_toy_data(out, seed=3, scale=0.02)


def first_avss_v2(root: Path, split: str = "test") -> tuple[str, str]:
    import pandas as pd

    meta = pd.read_csv(root / "metadata.csv")
    row = meta[(meta["label"] == "v2") & (meta["split"] == split)].iloc[0]
    return row["label"], row["uid"]


def test_missing_or_mis_sized_maskige_names_the_file_and_semantic_sam_size_is_read(toy):
    root = toy["avss"]
    label, uid = first_avss_v2(root)
    lay = AVSSLayout(root)
    frame_path = lay.frame(label, uid, 2)
    path = MASKIGE.path(lay, frame_path)
    assert path == root / f"pre_SAM_mask/AVSBench_semantic/{label}/{uid}/frames/2_mask_color.png"
    dataset = build_dataset("avss", root, "test", image_size=64, extra_inputs=(MASKIGE,))
    index = [r[0] for r in dataset.rows].index(uid)
    ids = np.asarray(Image.open(path))  # 192 x 256, as its frame
    # COMBO's AVSS maskiges keep Semantic-SAM's size: short edge 640, long int(640 * 256 / 192)
    big = cv2.resize(ids, (853, 640), interpolation=cv2.INTER_NEAREST)
    write_maskige(path, big)
    want = np.asarray(Image.fromarray(maskige_colours(big)).resize((64, 64), Image.NEAREST))
    assert torch.equal(dataset[index]["maskige"][2], encoded(want))
    write_maskige(path, ids[:, :224])  # made from other frames
    with pytest.raises(AVSDataError) as error:
        dataset[index]
    assert str(error.value) == (
        f"{path}: maskige is 224x192 (w x h) but its frame is 256x192, so it must be 256x192 "
        f"or 853x640: it was made from other frames; {MASKIGE.fix}"
    )
    path.unlink()
    with pytest.raises(AVSDataError) as error:
        dataset[index]
    assert str(error.value) == f"{path}: missing maskige of frame {frame_path}; {MASKIGE.fix}"
    assert "README" in MASKIGE.fix and "\n" not in str(error.value)
    write_maskige(path, ids)  # put back for the other tests


# ---------------------------------------------------------------------------------------
# The synthetic maskiges
# ---------------------------------------------------------------------------------------
def content_digest(root: Path) -> str:
    """sha256 over every file but the maskiges and the manifest: decoded pixels of images,
    arrays of log-mel pickles (their bytes vary run to run), bytes of the rest."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if "pre_SAM_mask" in rel or path.name == synthetic.TOY_DATA.manifest:
            continue
        if path.suffix == ".pkl":
            data = load_log_mel(path).tobytes()
        elif path.suffix in (".png", ".jpg"):
            data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).tobytes()
        else:
            data = path.read_bytes()
        digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


# content_digest of make_toy_data(seed=3, scale=0.02) written by the generator before it
# wrote maskiges (commit e2923b2): frames, masks, audio, CSVs and truth are unchanged
DIGESTS_BEFORE_MASKIGES = {
    "s4": "12426a0a28c541136f1493172e97edcdace7f8e3e762543d21604accdf5cb6d7",
    "ms3": "42377422b3eb14f97ee3a2ee91a5af2bb77b22f6501c1284b8f69341e5ebd99c",
    "avss": "e55a4a1463fb9260cd9e3d72a3e5545f80ca66e0bccb3857ca5c119b0b1d0381",
}


def test_the_other_synthetic_outputs_are_unchanged(toy):
    assert {s: content_digest(root) for s, root in toy.items()} == DIGESTS_BEFORE_MASKIGES


def frame_paths(setting: str, root: Path, dataset, index: int) -> list[Path]:
    row = dataset.rows[index]
    if setting == "s4":
        name, category = row
        return [S4Layout(root).frame(dataset.split, category, name, i) for i in range(1, 6)]
    if setting == "ms3":
        return [MS3Layout(root).frame(row, i) for i in range(1, 6)]
    return [AVSSLayout(root).frame(row[1], row[0], k) for k in range(10 if row[1] == "v2" else 5)]


@pytest.mark.parametrize("setting", ["s4", "ms3", "avss"])
def test_synthetic_maskiges_load_through_build_dataset(toy, setting):
    """Every frame has a maskige; with the frames' size it is served unresized: palette
    colours only, one colour per visible segment (a sounding object's pixels share one
    colour, found nowhere else), the frames' padding zero."""
    root = toy[setting]
    dataset = build_dataset(setting, root, "test", extra_inputs=(MASKIGE,))
    sample = dataset[0]
    frames = frame_paths(setting, root, dataset, 0)
    masks = sample["masks"].numpy()
    checked = 0  # frames whose one sounding object was checked
    for t, frame_path in enumerate(frames):
        rgb = np.asarray(Image.open(MASKIGE.path(dataset.layout, frame_path)).convert("RGB"))
        if rgb.shape[:2] == (224, 224):  # S4, MS3, AVSS v1: the sample holds it as it is
            assert torch.equal(sample["maskige"][t], encoded(rgb))
        colours = {tuple(c) for c in rgb.reshape(-1, 3)}
        assert colours <= {tuple(c) for c in ADE20K_PALETTE.tolist()}
        assert 2 <= len(colours) <= 3 + 4  # objects + background quadrants
        if rgb.shape[:2] == (224, 224) and masks[t].any() and setting != "avss":
            inside = rgb[masks[t] > 0]
            if len(np.unique(inside, axis=0)) == 1:  # one sounding object in this frame
                assert not (rgb[masks[t] == 0] == inside[0]).all(axis=1).any()
                checked += 1
    assert checked == (5 if setting == "s4" else checked)  # S4: one sounding object
    assert not sample["maskige"][len(frames) :].any()  # AVSS padding frames


def test_segment_masks_paint_visible_objects_and_quadrants():
    owner = np.full((4, 6), -1, dtype=np.int16)
    owner[0:2, 0:2] = 0  # object 0: 4 px in the top-left quadrant
    owner[3, 5] = 2  # object 2: 1 px; object 1 hidden
    masks = segment_masks(owner)
    assert len(masks) == 2 + 4  # object 1 (empty) dropped, four background quadrants
    # areas: object 2: 1, top-left background 2, object 0: 4, bottom-right 5, top-right 6,
    # bottom-left 6 (a tie: the input order, top-right first)
    expected = np.array(
        [
            [3, 3, 2, 5, 5, 5],
            [3, 3, 2, 5, 5, 5],
            [6, 6, 6, 4, 4, 4],
            [6, 6, 6, 4, 4, 1],
        ]
    )
    assert np.array_equal(paint_maskige(masks), expected)


# ---------------------------------------------------------------------------------------
# VCT: frames and maskiges at 384, evaluation masks at 224
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("setting", ["s4", "avss"])
def test_384_frames_and_maskiges_with_224_evaluation_masks(toy, setting):
    root = toy[setting]
    at224 = build_dataset(setting, root, "test", extra_inputs=(MASKIGE,))
    vct = build_dataset(
        setting, root, "test", image_size=384, eval_mask_size=224, extra_inputs=(MASKIGE,)
    )
    sample, reference = vct[0], at224[0]
    t = len(frame_paths(setting, root, vct, 0))
    assert sample["frames"].shape[-2:] == sample["maskige"].shape[-2:] == (384, 384)
    assert sample["masks"].shape[-2:] == (224, 224)
    assert torch.equal(sample["masks"], reference["masks"])  # GT as evaluated at 224
    frame_path = frame_paths(setting, root, vct, 0)[t - 1]
    frame = Image.open(frame_path).convert("RGB")
    maskige = Image.open(MASKIGE.path(vct.layout, frame_path)).convert("RGB")
    want_frame = np.asarray(frame.resize((384, 384), Image.BILINEAR))  # PIL bilinear
    want_maskige = np.asarray(maskige.resize((384, 384), Image.NEAREST))
    assert torch.equal(sample["frames"][t - 1], encoded(want_frame))
    assert torch.equal(sample["maskige"][t - 1], encoded(want_maskige))
    train = build_dataset(setting, root, "train", image_size=384, eval_mask_size=224)
    assert train[0]["masks"].shape[-2:] == (384, 384)  # training GT at the input size


def test_384_with_frame_cache_serves_the_same_samples(toy, tmp_path):
    root = toy["s4"]
    kwargs = dict(image_size=384, eval_mask_size=224, extra_inputs=(MASKIGE,))
    direct = build_dataset("s4", root, "test", **kwargs)[0]
    cached = build_dataset("s4", root, "test", frame_cache=tmp_path / "cache", **kwargs)
    assert cached.entry.name.startswith("s4_test_384px_") and "_m224_x" in cached.entry.name
    for key in ("frames", "maskige", "masks", "audio"):
        assert torch.equal(cached[0][key], direct[key]), key
