"""S4 / MS3 / AVSS datasets on tiny hand-written official layouts, and bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from avsbench.data import audio
from avsbench.data.datasets import (
    AVSSDataset,
    MS3Dataset,
    S4Dataset,
    build_dataset,
)
from avsbench.data.layouts import AVSDataError
from tests.data.avs_fixtures import frame_rgb, square_mask, tone, write_pkl, write_png

MEAN = np.array([0.485, 0.456, 0.406])[:, None, None]
STD = np.array([0.229, 0.224, 0.225])[:, None, None]


def normalised(rgb: np.ndarray) -> np.ndarray:
    """Independent ImageNet normalisation of uint8 [H, W, 3] -> [3, H, W]."""
    return (rgb.transpose(2, 0, 1) / 255.0 - MEAN) / STD


def nearest(
    a: np.ndarray,
    out_h: int,
    out_w: int,
    x0: int = 0,
    scaled_w: int | None = None,
    y0: int = 0,
    scaled_h: int | None = None,
) -> np.ndarray:
    """Nearest resize (to scaled_h x scaled_w) then crop at (y0, x0), by index formula."""
    h, w = a.shape[:2]
    scaled_h, scaled_w = scaled_h or out_h, scaled_w or out_w
    rows = np.floor((np.arange(out_h) + y0 + 0.5) * h / scaled_h).astype(int)
    cols = np.floor((np.arange(out_w) + x0 + 0.5) * w / scaled_w).astype(int)
    return a[rows][:, cols]


# --------------------------------------------------------------------------------------- S4
def test_s4_train_sample(s4_root):
    ds = S4Dataset(s4_root, "train")
    assert len(ds) == 1
    s = ds[0]
    assert set(s) == {"frames", "audio", "masks", "frame_valid", "gt_valid", "video_id", "category"}
    assert s["video_id"] == "vidTrain0001" and s["category"] == "dog_barking"
    assert s["frames"].shape == (5, 3, 224, 224) and s["frames"].dtype == torch.float32
    for i in range(5):
        np.testing.assert_allclose(s["frames"][i].numpy(), normalised(frame_rgb(i + 1)), atol=1e-5)
    assert s["masks"].dtype == torch.float32
    np.testing.assert_array_equal(s["masks"][0].numpy(), square_mask(1) / 255)
    assert s["masks"][1:].abs().sum() == 0
    assert s["gt_valid"].tolist() == [1, 0, 0, 0, 0]
    assert s["frame_valid"].tolist() == [1] * 5
    expected = np.random.default_rng(0).normal(size=(5, 1, 96, 64)).astype(np.float32)
    np.testing.assert_array_equal(s["audio"].numpy(), expected)


def test_s4_val_all_masks_modes_1_and_p(s4_root):
    s = S4Dataset(s4_root, "val")[0]
    assert s["gt_valid"].tolist() == [1] * 5
    for i in range(5):
        np.testing.assert_array_equal(s["masks"][i].numpy(), square_mask(i + 1) / 255)


def test_s4_image_size_112(s4_root):
    s = S4Dataset(s4_root, "val", image_size=112)[0]
    assert s["frames"].shape == (5, 3, 112, 112) and s["masks"].shape == (5, 112, 112)
    np.testing.assert_array_equal(s["masks"][2].numpy(), nearest(square_mask(3), 112, 112) / 255)
    path = s4_root / "s4_data/visual_frames/val/helicopter/vidVal000001/vidVal000001_1.png"
    resized = np.asarray(Image.open(path).resize((112, 112), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(s["frames"][0].numpy(), normalised(resized), atol=1e-5)


def test_s4_npy_preferred_and_wav_fallback(s4_root):
    pkl = s4_root / "s4_data/audio_log_mel/train/dog_barking/vidTrain0001.pkl"
    audio.save_log_mel_npy(pkl, np.full((5, 1, 96, 64), 3.0, np.float32))
    assert float(S4Dataset(s4_root, "train")[0]["audio"].mean()) == 3.0
    pkl.unlink()
    pkl.with_suffix(".npy").unlink()
    got = S4Dataset(s4_root, "train")[0]["audio"].numpy()
    wav = s4_root / "s4_data/audio_wav/train/dog_barking/vidTrain0001.wav"
    np.testing.assert_array_equal(got, audio.wav_to_log_mel(wav)[:, None])


def test_s4_columns_by_name_and_position(s4_root):
    csv = s4_root / "s4_meta_data.csv"
    # extra column and reordered: read by name
    csv.write_text("split,extra,category,start,name\ntrain,x,dog_barking,0,vidTrain0001\n")
    assert S4Dataset(s4_root, "train")[0]["video_id"] == "vidTrain0001"
    # unrecognised header: official positions name, start, category, split
    csv.write_text("vid,t0,cat,set\nvidTrain0001,0,dog_barking,train\n")
    assert S4Dataset(s4_root, "train")[0]["category"] == "dog_barking"


# -------------------------------------------------------------------------------------- MS3
def test_ms3_sample(ms3_root):
    ds = build_dataset("ms3", ms3_root, "train")
    assert isinstance(ds, MS3Dataset)
    s = ds[0]
    assert s["video_id"] == "abcDEF12345_3" and s["category"] == ""
    assert s["gt_valid"].tolist() == [1] * 5
    for i in range(5):
        np.testing.assert_allclose(
            s["frames"][i].numpy(), normalised(frame_rgb(101 + i)), atol=1e-5
        )
        np.testing.assert_array_equal(s["masks"][i].numpy(), square_mask(i + 1) / 255)
    expected = np.random.default_rng(7).normal(size=(5, 1, 96, 64)).astype(np.float32)
    np.testing.assert_array_equal(s["audio"].numpy(), expected)


# ------------------------------------------------------------------------------------- AVSS
def _ids(k, w, h):
    ids = np.zeros((h, w), dtype=np.int64)
    ids[5 : h // 2, 7 : w // 3] = 1 + k
    ids[h // 2 :, w // 2 :] = 70
    return ids


def test_avss_train_padding_flags_and_labels(avss_root):
    ds = AVSSDataset(avss_root, "train")
    by_uid = {ds[i]["video_id"]: ds[i] for i in range(len(ds))}
    v1s, v1m, v2 = by_uid["vidA_0"], by_uid["vidB_1"], by_uid["vidC_2"]
    assert v1s["category"] == "v1s" and v2["category"] == "v2"
    assert v1s["frames"].shape == (10, 3, 224, 224) and v1s["masks"].dtype == torch.int64
    assert v1s["frame_valid"].tolist() == [1] * 5 + [0] * 5
    assert v1s["gt_valid"].tolist() == [1] + [0] * 9
    assert v1m["gt_valid"].tolist() == [1] * 5 + [0] * 5
    assert v2["frame_valid"].tolist() == [1] * 10 and v2["gt_valid"].tolist() == [1] * 10
    assert v1s["frames"][5:].abs().sum() == 0 and v1s["masks"][1:].sum() == 0
    np.testing.assert_array_equal(v1s["masks"][0].numpy(), _ids(0, 224, 224))  # labels_rgb
    np.testing.assert_array_equal(v1m["masks"][3].numpy(), _ids(3, 224, 224))  # labels_semantic
    # v2 is 320 x 240: train = short edge to 224 (w -> int(298.67) = 298), crop x1 = 37
    np.testing.assert_array_equal(
        v2["masks"][4].numpy(), nearest(_ids(4, 320, 240), 224, 224, x0=37, scaled_w=298)
    )


def test_avss_audio_zero_padded_to_10(avss_root):
    ds = AVSSDataset(avss_root, "train")
    by_uid = {ds[i]["video_id"]: ds[i] for i in range(len(ds))}
    wave, rate = sf.read(avss_root / "v1s/vidA_0/audio.wav", dtype="int16")
    expected = audio.log_mel_examples(wave, rate)
    assert expected.shape == (5, 96, 64)
    a = by_uid["vidA_0"]["audio"]
    assert a.shape == (10, 1, 96, 64)
    np.testing.assert_array_equal(a[:5, 0].numpy(), expected)
    assert a[5:].abs().sum() == 0
    assert by_uid["vidC_2"]["audio"][9].abs().sum() > 0  # 10 s -> 10 real examples


def test_avss_val_resize_all_labels(avss_root):
    s = AVSSDataset(avss_root, "val", image_size=112)[0]
    assert s["gt_valid"].tolist() == [1] * 5 + [0] * 5
    np.testing.assert_array_equal(s["masks"][2].numpy(), nearest(_ids(2, 300, 200), 112, 112))


# -------------------------------------------------------------------------------- bad input
def test_missing_frame(s4_root):
    (s4_root / "s4_data/visual_frames/train/dog_barking/vidTrain0001/vidTrain0001_4.png").unlink()
    with pytest.raises(AVSDataError, match=r"vidTrain0001_4\.png: missing frame"):
        S4Dataset(s4_root, "train")[0]


def test_missing_mask(ms3_root):
    (ms3_root / "ms3_data/gt_masks/train/abcDEF12345_3/abcDEF12345_3_5.png").unlink()
    with pytest.raises(AVSDataError, match=r"abcDEF12345_3_5\.png: missing mask"):
        MS3Dataset(ms3_root, "train")[0]


def test_unreadable_image(ms3_root):
    (ms3_root / "ms3_data/visual_frames/abcDEF12345_3/abcDEF12345_3.mp4_2.png").write_bytes(b"junk")
    with pytest.raises(AVSDataError, match=r"\.mp4_2\.png: unreadable frame"):
        MS3Dataset(ms3_root, "train")[0]


def test_wrong_mask_size(s4_root):
    path = s4_root / "s4_data/gt_masks/train/dog_barking/vidTrain0001/vidTrain0001_1.png"
    write_png(path, np.zeros((100, 120), np.uint8))
    with pytest.raises(AVSDataError, match=r"vidTrain0001_1\.png: mask is 120x100.*224x224"):
        S4Dataset(s4_root, "train")[0]


def test_colour_not_in_palette(avss_root):
    path = avss_root / "v1s/vidA_0/labels_rgb/0.png"
    rgb = np.asarray(Image.open(path)).copy()
    rgb[50, 60] = (10, 200, 30)
    write_png(path, rgb)
    with pytest.raises(AVSDataError, match=r"labels_rgb/0\.png.*\(10, 200, 30\)"):
        AVSSDataset(avss_root, "train")[0]


def test_semantic_label_out_of_range(avss_root):
    write_png(avss_root / "v1m/vidB_1/labels_semantic/0.png", np.full((224, 224), 90, np.uint8))
    ds = AVSSDataset(avss_root, "train")
    index = [uid for uid, _ in ds.rows].index("vidB_1")
    with pytest.raises(AVSDataError, match=r"labels_semantic/0\.png: class id 90"):
        ds[index]


def test_csv_without_needed_columns(s4_root, avss_root):
    (s4_root / "s4_meta_data.csv").write_text("name,category\nvidTrain0001,dog_barking\n")
    with pytest.raises(AVSDataError, match=r"s4_meta_data\.csv: missing column\(s\) \['split'\]"):
        S4Dataset(s4_root, "train")
    (avss_root / "metadata.csv").write_text("a,b\n1,2\n")
    with pytest.raises(AVSDataError, match=r"metadata\.csv: needs the columns"):
        AVSSDataset(avss_root, "train")


def test_empty_split(ms3_root):
    with pytest.raises(AVSDataError, match=r"no rows with split == 'test'"):
        MS3Dataset(ms3_root, "test")


def test_unknown_avss_subset(avss_root):
    csv = avss_root / "metadata.csv"
    csv.write_text(csv.read_text().replace(",val,v1s", ",val,v3"))
    with pytest.raises(AVSDataError, match=r"unknown subset label\(s\) \['v3'\]"):
        AVSSDataset(avss_root, "val")


def test_audio_too_short(s4_root, avss_root):
    pkl = s4_root / "s4_data/audio_log_mel/train/dog_barking/vidTrain0001.pkl"
    write_pkl(pkl, np.zeros((3, 1, 96, 64), np.float32))
    with pytest.raises(AVSDataError, match=r"vidTrain0001\.pkl: audio too short: 3"):
        S4Dataset(s4_root, "train")[0]
    sf.write(avss_root / "v1s/vidD_3/audio.wav", tone(0.5), 16000, subtype="PCM_16")
    with pytest.raises(AVSDataError, match=r"vidD_3/audio\.wav: audio too short"):
        AVSSDataset(avss_root, "val")[0]


def test_missing_audio(ms3_root):
    shutil.rmtree(ms3_root / "ms3_data/audio_log_mel")
    with pytest.raises(AVSDataError, match=r"abcDEF12345_3\.pkl: missing audio log-mel"):
        MS3Dataset(ms3_root, "train")[0]


def test_bad_arguments(s4_root, tmp_path):
    with pytest.raises(ValueError, match="unknown split"):
        S4Dataset(s4_root, "training")
    with pytest.raises(ValueError, match="frames_per_clip"):
        S4Dataset(s4_root, "train", frames_per_clip=10)
    with pytest.raises(AVSDataError, match="dataset root not found"):
        S4Dataset(tmp_path / "nope", "train")
    with pytest.raises(ValueError, match="valid: \\['avss', 'ms3', 's4'\\]"):
        build_dataset("s5", s4_root, "train")
