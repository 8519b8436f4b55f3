"""Extra per-frame inputs (COMBO / VCT maskiges): paths in the official layouts, values
equal to an independent PIL computation, errors naming the file, AVSS padding, the
default collate, and the frame cache serving the same tensors."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from avsbench.data import frame_cache as FC
from avsbench.data import frame_fingerprint
from avsbench.data.datasets import AVSSDataset, MS3Dataset, S4Dataset, build_dataset
from avsbench.data.extra_inputs import MASKIGE, ExtraInput
from avsbench.data.layouts import AVSDataError

# The first ADE20K palette colours, as the published maskiges use them (id 0 = uncovered).
ADE = [(120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (204, 5, 255)]
MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
UNIT_MASKIGE = dataclasses.replace(MASKIGE, key="maskige_unit", values="unit")


def maskige_image(size: tuple[int, int], seed: int) -> Image.Image:
    """A palette image of 5 x 5 px blocks of ADE colours, like a painted maskige."""
    w, h = size
    blocks = np.random.default_rng(seed).integers(0, len(ADE), size=(h // 5 + 1, w // 5 + 1))
    ids = blocks.repeat(5, 0).repeat(5, 1)[:h, :w].astype(np.uint8)  # [h, w]
    image = Image.fromarray(ids, mode="P")
    image.putpalette([c for colour in ADE for c in colour])
    return image


def published_path(root: Path, frame: Path) -> Path:
    """The maskige of `frame` in COMBO's released trees (written out per layout)."""
    rel = frame.relative_to(root)
    if rel.parts[:2] in (("s4_data", "visual_frames"), ("ms3_data", "visual_frames")):
        base = root / rel.parts[0] / "pre_SAM_mask" / Path(*rel.parts[2:])
    else:  # AVSS: <label>/<uid>/frames/<k>.jpg
        base = root / "pre_SAM_mask" / "AVSBench_semantic" / rel
    return base.with_name(base.stem + "_mask_color.png")


def write_maskiges(root: Path) -> dict[Path, Path]:
    """A maskige the size of every frame under `root`; returns {frame: maskige}."""
    frames = sorted(root.glob("s4_data/visual_frames/**/*.png"))
    frames += sorted(root.glob("ms3_data/visual_frames/**/*.png"))
    frames += sorted(root.glob("*/*/frames/*.jpg"))
    written = {}
    for n, frame in enumerate(frames):
        path = published_path(root, frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        maskige_image(Image.open(frame).size, seed=n).save(path)
        written[frame] = path
    assert written
    return written


def expected(path: Path, size: int, box=None, resized=None, values="imagenet") -> torch.Tensor:
    """Independent computation: PIL open -> RGB -> NEAREST resize (and crop) -> scale."""
    image = Image.open(path).convert("RGB")
    if resized is not None:  # AVSS train: short edge to `size`, then the crop `box`
        image = image.resize(resized, Image.Resampling.NEAREST).crop(box)
    elif image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.NEAREST)
    pixels = np.asarray(image).transpose(2, 0, 1).astype(np.float32)  # [3, S, S]
    unit = pixels / np.float32(255)
    return torch.from_numpy(unit if values == "unit" else (unit - MEAN) / STD)


@pytest.fixture
def s4_maskiges(s4_root):
    return s4_root, write_maskiges(s4_root)


@pytest.fixture
def avss_maskiges(avss_root):
    return avss_root, write_maskiges(avss_root)


def test_the_paths_are_the_published_ones(s4_root, ms3_root, avss_root):
    cases = [
        (
            S4Dataset(s4_root, "train"),
            S4Dataset(s4_root, "train").layout.frame("train", "dog_barking", "vidTrain0001", 1),
            "s4_data/pre_SAM_mask/train/dog_barking/vidTrain0001/vidTrain0001_1_mask_color.png",
        ),
        (
            MS3Dataset(ms3_root, "train"),
            MS3Dataset(ms3_root, "train").layout.frame("abcDEF12345_3", 5),
            "ms3_data/pre_SAM_mask/abcDEF12345_3/abcDEF12345_3.mp4_5_mask_color.png",
        ),
        (
            AVSSDataset(avss_root, "train"),
            AVSSDataset(avss_root, "train").layout.frame("v2", "vidC_2", 9),
            "pre_SAM_mask/AVSBench_semantic/v2/vidC_2/frames/9_mask_color.png",
        ),
    ]
    for dataset, frame, relative in cases:
        assert MASKIGE.path(dataset.layout, frame) == dataset.root / relative


@pytest.mark.parametrize("values", ["imagenet", "unit"])
def test_s4_and_ms3_values_equal_pil(s4_maskiges, ms3_root, values):
    root, maskiges = s4_maskiges
    ms3_maskiges = write_maskiges(ms3_root)
    extra = MASKIGE if values == "imagenet" else UNIT_MASKIGE
    for setting, data_root, split, written in [
        ("s4", root, "val", maskiges),
        ("s4", root, "train", maskiges),
        ("ms3", ms3_root, "train", ms3_maskiges),
    ]:
        for size in (224, 96):  # stored size, and resized
            dataset = build_dataset(
                setting, data_root, split, image_size=size, extra_inputs=(extra,)
            )
            plain = build_dataset(setting, data_root, split, image_size=size)
            for index in range(len(dataset)):
                sample = dataset[index]
                maskige = sample[extra.key]
                assert maskige.dtype == torch.float32 and maskige.shape == (5, 3, size, size)
                frames = [f for f in written if sample["video_id"] in str(f)]
                assert len(frames) == 5
                for t, frame in enumerate(sorted(frames, key=lambda p: p.stem[-1])):
                    want = expected(written[frame], size, values=values)
                    assert torch.equal(maskige[t], want), (frame, t)
                # the rest of the sample is unchanged by the extra input
                base = plain[index]
                assert set(sample) == set(base) | {extra.key}
                assert all(torch.equal(sample[k], base[k]) for k in ("frames", "masks", "audio"))
    if values == "unit":  # NEAREST keeps the palette: every pixel is one of its colours
        pixels = (dataset[0][extra.key] * 255).round().int()  # [5, 3, 96, 96]
        colours = {tuple(c) for c in pixels.permute(0, 2, 3, 1).reshape(-1, 3).tolist()}
        assert colours <= set(ADE) and len(colours) > 1


def test_avss_crop_padding_and_collate(avss_maskiges):
    root, written = avss_maskiges
    dataset = build_dataset("avss", root, "train", image_size=64, extra_inputs=(MASKIGE,))
    samples = {s["video_id"]: s for s in (dataset[i] for i in range(len(dataset)))}
    # v2 frames are 320 x 240: short edge 240 -> 64 gives 85 x 64, crop x1 = round(10.5) = 10
    v2 = samples["vidC_2"]["maskige"]
    for k in range(10):
        path = root / "pre_SAM_mask/AVSBench_semantic/v2/vidC_2/frames" / f"{k}_mask_color.png"
        want = expected(path, 64, box=(10, 0, 74, 64), resized=(85, 64))
        assert torch.equal(v2[k], want), k
    # v1s: 5 real frames (224 x 224 -> 64), then 5 padding frames of zeros
    v1s = samples["vidA_0"]["maskige"]
    assert v1s.shape == (10, 3, 64, 64)
    path = root / "pre_SAM_mask/AVSBench_semantic/v1s/vidA_0/frames/4_mask_color.png"
    assert torch.equal(v1s[4], expected(path, 64))
    assert torch.count_nonzero(v1s[5:]) == 0 and torch.count_nonzero(v1s[:5].abs() > 0) > 0
    # val: plain resize of 300 x 200 frames
    val = build_dataset("avss", root, "val", image_size=48, extra_inputs=(MASKIGE,))[0]
    path = root / "pre_SAM_mask/AVSBench_semantic/v1s/vidD_3/frames/2_mask_color.png"
    assert torch.equal(val["maskige"][2], expected(path, 48))
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch["maskige"].shape == (2, 10, 3, 64, 64) == batch["frames"].shape
    assert batch["maskige"].dtype == torch.float32


def test_semantic_source_reads_the_avss_tree(avss_maskiges):
    root, _ = avss_maskiges
    sample = build_dataset(
        "ms3", root, "train", source="semantic", image_size=32, extra_inputs=(MASKIGE,)
    )[0]
    path = root / "pre_SAM_mask/AVSBench_semantic/v1m/vidB_1/frames/3_mask_color.png"
    assert sample["video_id"] == "vidB_1"
    assert torch.equal(sample["maskige"][3], expected(path, 32))


def test_missing_unreadable_and_mis_sized_files_name_the_file(s4_maskiges):
    root, written = s4_maskiges
    path = root / "s4_data/pre_SAM_mask/val/helicopter/vidVal000001/vidVal000001_3_mask_color.png"
    assert path in written.values()
    dataset = build_dataset("s4", root, "val", extra_inputs=(MASKIGE,))
    frame = root / "s4_data/visual_frames/val/helicopter/vidVal000001/vidVal000001_3.png"
    path.unlink()
    with pytest.raises(AVSDataError) as error:
        dataset[0]
    assert str(error.value) == f"{path}: missing maskige of frame {frame}; {MASKIGE.fix}"
    path.write_bytes(b"not a png")
    with pytest.raises(AVSDataError, match=f"^{re.escape(str(path))}: unreadable maskige"):
        dataset[0]
    maskige_image((200, 224), seed=1).save(path)
    with pytest.raises(AVSDataError) as error:
        dataset[0]
    assert str(error.value) == (
        f"{path}: maskige is 200x224 (w x h) but its frame is 224x224, so it must be "
        f"224x224 or 640x640: it was made from other frames; {MASKIGE.fix}"
    )
    assert "\n" not in str(error.value)


def test_declarations_are_checked(s4_root):
    with pytest.raises(ValueError, match="base sample key"):
        dataclasses.replace(MASKIGE, key="frames")
    with pytest.raises(ValueError, match="relative path"):
        dataclasses.replace(MASKIGE, folders={"s4": "../elsewhere"})
    with pytest.raises(ValueError, match="each layout once"):
        dataclasses.replace(MASKIGE, folders={"s5": "x"})
    with pytest.raises(ValueError, match="unknown values 'raw'"):
        dataclasses.replace(MASKIGE, values="raw")
    with pytest.raises(ValueError, match="repeated keys"):
        build_dataset("s4", s4_root, "val", extra_inputs=(MASKIGE, MASKIGE))
    assert ExtraInput.from_description(MASKIGE.describe()) == MASKIGE
    assert dataclasses.replace(MASKIGE, folders=dict(MASKIGE.folders)) == MASKIGE


def test_a_dataset_whose_layout_has_no_folder_is_refused(s4_root):
    avss_only = dataclasses.replace(MASKIGE, folders={"avss": "pre_SAM_mask/AVSBench_semantic"})
    with pytest.raises(ValueError, match="no folder for the 's4' layout"):
        build_dataset("s4", s4_root, "val", extra_inputs=(avss_only,))


# ---------------------------------------------------------------------------------------
# The frame cache
# ---------------------------------------------------------------------------------------
def _assert_equal_datasets(computed, cached, keys) -> None:
    assert len(computed) == len(cached)
    for i in range(len(computed)):
        a, b = computed[i], cached[i]
        assert a.keys() == b.keys()
        for key in keys:
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), (i, key)


def test_the_frame_cache_serves_the_same_extra_inputs(s4_maskiges, avss_maskiges, tmp_path):
    extras = (MASKIGE, UNIT_MASKIGE)
    keys = ("frames", "masks", "audio", "frame_valid", "gt_valid", "maskige", "maskige_unit")
    for setting, (root, _), split, size in [
        ("s4", s4_maskiges, "val", 224),
        ("avss", avss_maskiges, "train", 40),  # padded clips, cropped v2 frames
    ]:
        computed = build_dataset(setting, root, split, image_size=size, extra_inputs=extras)
        cached = build_dataset(
            setting, root, split, image_size=size, extra_inputs=extras, frame_cache=tmp_path / "c"
        )
        assert isinstance(cached, FC.FrameCachedDataset) and cached.built
        assert (cached.entry / "extra_maskige.npy").is_file()
        _assert_equal_datasets(computed, cached, keys)
        if setting == "avss":
            assert any(not cached[i]["frame_valid"].all() for i in range(len(cached)))


def test_the_fingerprint_follows_the_declarations_and_the_files(s4_maskiges, tmp_path):
    root, written = s4_maskiges
    plain = build_dataset("s4", root, "val", image_size=32)
    with_maskige = build_dataset("s4", root, "val", image_size=32, extra_inputs=(MASKIGE,))
    unit = build_dataset("s4", root, "val", image_size=32, extra_inputs=(UNIT_MASKIGE,))
    prints = [frame_fingerprint.fingerprint(d) for d in (plain, with_maskige, unit)]
    assert prints[0]["extra_inputs"] == [] and prints[1]["extra_inputs"] == [MASKIGE.describe()]
    assert prints[0]["sources"] != prints[1]["sources"]  # the maskige files are listed
    assert len({FC.entry_name(d) for d in (plain, with_maskige, unit)}) == 3
    listed = set(frame_fingerprint.source_files(with_maskige))
    assert {p for f, p in written.items() if "vidVal000001" in str(f)} <= listed

    first = FC.open_frame_cache(with_maskige, tmp_path / "cache", progress=False)
    again = FC.open_frame_cache(with_maskige, tmp_path / "cache", progress=False)
    assert first.built and not again.built
    before = first[0]["maskige"]
    path = next(p for f, p in written.items() if "vidVal000001_2" in f.name)
    maskige_image((224, 224), seed=99).save(path)  # a new maskige, same size
    rebuilt = FC.open_frame_cache(with_maskige, tmp_path / "cache", progress=False)
    assert rebuilt.built
    assert torch.equal(rebuilt[0]["maskige"][1], expected(path, 32))
    assert not torch.equal(before[1], rebuilt[0]["maskige"][1])


def test_a_missing_extra_file_stops_the_build_naming_it(s4_maskiges, tmp_path):
    root, written = s4_maskiges
    path = next(p for f, p in written.items() if "vidVal000001_4" in f.name)
    shutil.move(path, tmp_path / "moved.png")
    dataset = build_dataset("s4", root, "val", extra_inputs=(MASKIGE,))
    with pytest.raises(AVSDataError, match=f"{re.escape(str(path))}: missing maskige"):
        FC.open_frame_cache(dataset, tmp_path / "cache", progress=False)
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()] == []
