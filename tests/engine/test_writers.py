"""What test.sh writes: masks as the published test scripts write them, overlays, grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from avsbench.engine.writers import PredictionWriter


def test_binary_masks_are_written_as_published(tmp_path):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2 * 5, 1, 32, 32, generator=g)
    batch = {
        "frames": torch.zeros(2, 5, 3, 32, 32),
        "masks": torch.zeros(2, 5, 32, 32),
        "frame_valid": torch.ones(2, 5),
        "video_id": ["vidA", "vidB"],
        "category": ["dog_barking", "helicopter"],
    }
    writer = PredictionWriter("s4", mask_dir=tmp_path / "m", overlay_dir=tmp_path / "o",
                                report_dir=tmp_path / "r", max_videos=1)  # fmt: skip
    writer(batch, logits)
    path = tmp_path / "m" / "helicopter" / "vidB" / "vidB_3.png"
    saved = np.asarray(Image.open(path))
    assert saved.shape == (32, 32) and set(np.unique(saved)) <= {0, 255}
    expected = (torch.sigmoid(logits[5 + 2, 0]) > 0.5).numpy()
    assert np.array_equal(saved == 255, expected)
    assert len(list((tmp_path / "m").rglob("*.png"))) == 10
    assert (tmp_path / "o" / "dog_barking" / "vidA" / "vidA_1.png").is_file()
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["vidA.png"]  # max_videos=1


def test_avss_masks_are_palette_pngs_at_360x240(tmp_path):
    ids = torch.zeros(10, 24, 24, dtype=torch.long)
    ids[:, :12, :12] = 7
    ids[:, 12:, 12:] = 70
    logits = torch.nn.functional.one_hot(ids, 71).permute(0, 3, 1, 2).float()  # [10, 71, H, W]
    batch = {
        "frames": torch.zeros(1, 10, 3, 24, 24),
        "masks": ids.reshape(1, 10, 24, 24),
        "frame_valid": torch.tensor([[1.0] * 5 + [0.0] * 5]),  # a 5-frame clip, padded
        "video_id": ["uid_1"],
        "category": ["v1m"],
    }
    PredictionWriter("avss", mask_dir=tmp_path)(batch, logits)
    assert sorted(p.name for p in (tmp_path / "uid_1").iterdir()) == [f"{k}.png" for k in range(5)]
    img = Image.open(tmp_path / "uid_1" / "0.png")
    assert img.mode == "P" and img.size == (360, 240)
    values = np.asarray(img)
    assert values[0, 0] == 7 and values[-1, -1] == 70 and values[0, -1] == 0
    assert img.getpalette()[7 * 3 : 7 * 3 + 3] == [128, 128, 128]  # VOC palette, class 7


def test_a_hostile_clip_name_writes_nothing_outside_the_folder(tmp_path):
    from avsbench.fileio import OutsideFolderError

    run = tmp_path / "run"
    batch = {
        "frames": torch.zeros(1, 5, 3, 16, 16),
        "masks": torch.zeros(1, 5, 16, 16),
        "frame_valid": torch.ones(1, 5),
        "video_id": ["../../escaped"],
        "category": ["dog_barking"],
    }
    writer = PredictionWriter("s4", mask_dir=run / "m", report_dir=run / "r")
    with pytest.raises(OutsideFolderError, match="outside"):
        writer(batch, torch.zeros(5, 1, 16, 16))
    assert not any(p.suffix == ".png" for p in tmp_path.rglob("*"))
