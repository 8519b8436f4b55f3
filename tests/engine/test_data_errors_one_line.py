"""A data error met while samples load (a NaN log-mel, a missing frame, a mask of the wrong
size or, with --strict_masks, in another encoding) ends train.sh with one line naming the
file, exit 2, whether the sample was read in the main process or in a DataLoader worker
(docs/RELIABILITY.md, "Inputs validated when read")."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avsbench.commands import test as cmd_test
from avsbench.commands import train as cmd_train
from avsbench.data.audio import save_log_mel_pkl
from avsbench.data.layouts import S4_COLUMNS, S4Layout, read_metadata
from tests.engine.engine_helpers import tiny_flags


def _train_clips(root: Path) -> list[tuple[str, str]]:
    meta = read_metadata(S4Layout(root).meta_csv, S4_COLUMNS, ("name", "category", "split"))
    train = meta[meta["split"] == "train"]
    return list(zip(train["name"], train["category"]))


def _plant(root: Path, defect: str) -> tuple[list[Path], list[str]]:
    """Plant `defect` in every train clip of the S4 copy at `root` -> (the broken files,
    the flags the defect needs)."""
    lay, broken, flags = S4Layout(root), [], []
    for name, category in _train_clips(root):
        if defect == "nan_log_mel":
            path = lay.log_mel("train", category, name)
            examples = np.zeros((5, 1, 96, 64), dtype=np.float32)
            examples[2, 0, 10, 10] = np.nan
            save_log_mel_pkl(path, examples)
            path.with_suffix(".npy").unlink(missing_ok=True)
        elif defect == "missing_middle_frame":
            path = lay.frame("train", category, name, 3)
            path.unlink()
        elif defect in ("mask_size", "strict_masks"):
            path = lay.mask("train", category, name, 1)
            mask = np.asarray(Image.open(path).convert("L"))
            if defect == "mask_size":
                Image.fromarray(mask[:-8]).save(path)  # 8 rows fewer than its frame
            else:
                Image.fromarray((mask >= 128).astype(np.uint8)).save(path)  # 0/1, not 0/255
                flags = ["--strict_masks"]
        broken.append(path)
    return broken, flags


EXPECTED = {
    "nan_log_mel": "non-finite value",
    "missing_middle_frame": "missing frame",
    "mask_size": "masks must have the size of their frame",
    "strict_masks": "an error because of --strict_masks",
}


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("defect", sorted(EXPECTED))
def test_a_broken_sample_is_one_line(tmp_path, s4_toy, capsys, defect, workers):
    root = tmp_path / "Single-source"
    shutil.copytree(s4_toy, root)
    broken, flags = _plant(root, defect)
    argv = tiny_flags(root, tmp_path / "logs", num_workers=workers) + flags
    capsys.readouterr()
    status = cmd_train.main("s4", argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("avsbench: "), err
    assert EXPECTED[defect] in lines[0], err
    assert any(lines[0].startswith(f"avsbench: {path}: ") for path in broken), err


def _csv_line(csv: Path, line: int, old: str, new: str) -> None:
    lines = csv.read_text().split("\n")
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    csv.write_text("\n".join(lines))


def test_a_malformed_csv_row_is_reported_as_such_not_as_missing_data(tmp_path, s4_toy, capsys):
    root = tmp_path / "Single-source"
    shutil.copytree(s4_toy, root)
    csv = S4Layout(root).meta_csv
    _csv_line(csv, 3, ",train", ",Train")
    status = cmd_train.main("s4", tiny_flags(root, tmp_path / "logs"))
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.strip() == (
        f"avsbench: {csv}, line 3: unknown split 'Train' (valid: ['train', 'val', 'test'], "
        "lower case); fix or remove the row"
    )
    assert not (tmp_path / "logs").exists()


def test_a_missing_metadata_csv_still_says_where_to_set_the_root(tmp_path, s4_toy, capsys):
    root = tmp_path / "Single-source"
    shutil.copytree(s4_toy, root)
    S4Layout(root).meta_csv.unlink()
    status = cmd_train.main("s4", tiny_flags(root, tmp_path / "logs"))
    err = capsys.readouterr().err
    assert status == 2, err
    assert f"AVSBench S4 data not found at {root} ({root / 's4_meta_data.csv'}: " in err, err
    assert "Fix: set DATA_ROOT in" in err and "Traceback" not in err, err


def test_test_sh_stops_on_a_broken_test_clip_with_one_line(tmp_path, s4_toy, capsys):
    root = tmp_path / "Single-source"
    shutil.copytree(s4_toy, root)
    logs = tmp_path / "logs"
    assert cmd_train.main("s4", tiny_flags(root, logs, max_steps_per_epoch=1)) == 0
    (weights,) = logs.glob("*/checkpoints/S4_best.pth")
    meta = read_metadata(S4Layout(root).meta_csv, S4_COLUMNS, ("name", "category", "split"))
    frames = [S4Layout(root).frame("test", c, n, 2) for n, c, s in meta.itertuples(index=False)
              if s == "test"]  # fmt: skip
    for frame in frames:
        frame.unlink()
    capsys.readouterr()
    argv = ["--synthetic", "--data_root", str(root), "--weights", str(weights), "--image_size",
            "64", "--decoder_channels", "16", "--num_workers", "2", "--device", "cpu",
            "--log_dir", str(tmp_path / "test_logs")]  # fmt: skip
    status = cmd_test.main("s4", argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert any(err.strip() == f"avsbench: {frame}: missing frame" for frame in frames), err
    assert not (tmp_path / "test_logs").exists() or not any((tmp_path / "test_logs").iterdir())
