"""S4 and MS3 from the AVSBench-semantic release (`--data_source semantic`): the v1s / v1m
clips of the AVSS layout as binary 5-frame samples, checked pixel by pixel against the
class maps written by the fixture (avs_fixtures.avss_root)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from avsbench.data import audio
from avsbench.data.datasets import S4Dataset, build_dataset
from avsbench.data.layouts import AVSDataError
from avsbench.data.semantic_object import SemanticObjectDataset
from tests.data.avs_fixtures import write_avss_clip


def class_map(k: int, w: int, h: int) -> np.ndarray:
    """The ids avs_fixtures.write_avss_clip writes for label k (two objects)."""
    ids = np.zeros((h, w), dtype=np.uint8)
    ids[5 : h // 2, 7 : w // 3] = 1 + k
    ids[h // 2 :, w // 2 :] = 70
    return ids


def binary_resized(ids: np.ndarray, size: int) -> np.ndarray:
    """Object = any class but 0, resized (nearest) to size x size: the expected mask."""
    mask = Image.fromarray((ids != 0).astype(np.uint8) * 255)
    return (np.asarray(mask.resize((size, size), Image.Resampling.NEAREST)) > 0).astype(np.float32)


def test_s4_train_reads_v1s_frame_0_only(avss_root):
    ds = build_dataset("s4", avss_root, "train", source="semantic")
    assert isinstance(ds, SemanticObjectDataset) and len(ds) == 1  # the v1s train clip only
    s = ds[0]
    assert s["video_id"] == "vidA_0" and s["category"] == "v1s"
    assert s["frames"].shape == (5, 3, 224, 224) and s["masks"].shape == (5, 224, 224)
    assert s["gt_valid"].tolist() == [1, 0, 0, 0, 0]  # the S4 loss reads frame 0
    assert s["frame_valid"].tolist() == [1] * 5
    expected_mask = binary_resized(class_map(0, 224, 224), 224)
    np.testing.assert_array_equal(s["masks"][0].numpy(), expected_mask)
    assert s["masks"][1:].sum() == 0
    # frame k is frames/<k>.jpg (0-based), normalised as the S4 loader does
    image = np.asarray(Image.open(avss_root / "v1s/vidA_0/frames/3.jpg").convert("RGB"))
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = ((image / 255.0 - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(s["frames"][3].numpy(), expected, atol=1e-5)
    # audio: log-mel of the 22.05 kHz wav (resampled), 5 examples
    wave, rate = sf.read(avss_root / "v1s/vidA_0/audio.wav", dtype="int16")
    np.testing.assert_array_equal(s["audio"][:, 0].numpy(), audio.log_mel_examples(wave, rate))


def test_s4_train_ignores_further_label_files(avss_root):
    """A copy with labels for all 5 train frames is read as published: frame 0 supervised."""
    write_avss_clip(avss_root, "v1s", "vidA_0", 5, 5, (224, 224), semantic=False, seconds=5.0)
    s = build_dataset("s4", avss_root, "train", source="semantic")[0]
    assert s["gt_valid"].tolist() == [1, 0, 0, 0, 0] and s["masks"][1:].sum() == 0


def test_s4_val_all_five_masks_resized_to_the_square(avss_root):
    s = build_dataset("s4", avss_root, "val", source="semantic", image_size=96)[0]
    assert s["video_id"] == "vidD_3" and s["gt_valid"].tolist() == [1] * 5
    for k in range(5):  # 300 x 200 frames and labels, resized (no AVSS crop)
        expected = binary_resized(class_map(k, 300, 200), 96)
        np.testing.assert_array_equal(s["masks"][k].numpy(), expected)


def test_ms3_reads_v1m_from_labels_semantic(avss_root):
    s = build_dataset("ms3", avss_root, "train", source="semantic", image_size=64)[0]
    assert s["video_id"] == "vidB_1" and s["category"] == "v1m"
    assert s["gt_valid"].tolist() == [1] * 5 and s["masks"].dtype == torch.float32
    # the colour masks are removed: the labels_semantic files alone must give the masks
    for k in range(5):
        (avss_root / f"v1m/vidB_1/labels_rgb/{k}.png").unlink()
    s = build_dataset("ms3", avss_root, "train", source="semantic", image_size=64)[0]
    for k in range(5):
        expected = binary_resized(class_map(k, 224, 224), 64)
        np.testing.assert_array_equal(s["masks"][k].numpy(), expected)


def test_object_source_is_the_default(avss_root, s4_root):
    assert isinstance(build_dataset("s4", s4_root, "train"), S4Dataset)
    with pytest.raises(ValueError, match="unknown data source"):
        build_dataset("s4", s4_root, "train", source="objects")
    with pytest.raises(ValueError, match="serves"):
        SemanticObjectDataset(avss_root, "train", setting="avss")


def test_bad_semantic_input_names_the_file(avss_root, s4_root, tmp_path):
    with pytest.raises(AVSDataError, match=r"metadata\.csv: metadata CSV not found.*semantic"):
        build_dataset("s4", s4_root, "train", source="semantic")  # the object root
    with pytest.raises(AVSDataError, match="no rows with split == 'val'"):
        build_dataset("ms3", avss_root, "val", source="semantic")  # no v1m clip in val
    (avss_root / "v1s/vidD_3/labels_rgb/3.png").unlink()
    with pytest.raises(AVSDataError, match=r"vidD_3/labels_rgb/3\.png: missing mask"):
        build_dataset("s4", avss_root, "val", source="semantic")[0]
    rgb = np.zeros((224, 224, 3), dtype=np.uint8)
    rgb[0, 0] = (1, 2, 3)  # not a palette colour
    Image.fromarray(rgb).save(avss_root / "v1s/vidA_0/labels_rgb/0.png")
    with pytest.raises(AVSDataError, match=r"vidA_0/labels_rgb/0\.png"):
        build_dataset("s4", avss_root, "train", source="semantic")[0]
    (avss_root / "metadata.csv").write_text("vid,uid,a_obj,split,label\nx,x_0,dog,train,v2\n")
    with pytest.raises(AVSDataError, match="no clip with label == 'v1s'"):
        build_dataset("s4", avss_root, "train", source="semantic")
