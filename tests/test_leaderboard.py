"""`avsbench leaderboard`: the table, CSV and charts from metrics files (hand-written ones
and, in the slow test, one a real tiny test.sh run wrote), and its one-line refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from avsbench import cli
from avsbench.leaderboard import PROTOCOL_GROUPS, build_tables, read_rows

S4_A = {  # test.sh's shape: the run's facts, "metrics", "config"
    "setting": "s4",
    "split": "test",
    "weights": "/runs/S4_x/checkpoints/S4_best.pth",
    "test_batch_size": 4,
    "metrics": {
        "miou": 0.7878,
        "fscore": 0.88,
        "miou_test_batch_4": 0.7878,
        "fscore_test_batch_4": 0.88,
        "miou_test_batch_2": 0.79,
        "fscore_test_batch_2": 0.881,
        "miou_per_clip": 0.8,
        "fscore_per_clip": 0.9,
        "miou_per_frame": 0.78,
        "a_key_no_group_names": 12.0,
    },
    "config": {"model": {"method": "tpavi", "backbone": "pvt_v2_b5", "setting": "s4"}},
}
S4_B = {  # as `avsbench evaluate` on another codebase's masks: a name, fewer protocols
    "name": "CAVP (their masks)",
    "setting": "s4",
    "split": "test",
    "metrics": {
        "miou_test_batch_4": 0.8012,
        "fscore_test_batch_4": 0.87,
        "miou_dataset_ddeseg": 0.905,
        "fscore_dataset_ddeseg": 0.95,
    },
}
AVSS = {
    "setting": "avss",
    "split": "test",
    "metrics": {
        "miou": 0.2,
        "fscore": 0.25,
        "subsets": {"v1s": {"miou": 0.3, "fscore": 0.35}, "v2": {"miou": 0.1, "fscore": 0.15}},
    },
    "config": {"model": {"method": "avsegformer", "backbone": "resnet50"}},
}


def _write(folder: Path, name: str, data: object) -> Path:
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def _run(capsys, *args: str) -> tuple[int, str, str]:
    status = cli.main(["leaderboard", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_table_csv_and_charts_from_hand_written_files(tmp_path, capsys):
    a = _write(tmp_path, "a.json", S4_A)
    b = _write(tmp_path, "b.json", S4_B)
    c = _write(tmp_path, "c.json", AVSS)
    out = tmp_path / "board"
    status, printed, err = _run(capsys, str(a), str(b), str(c), "--out", str(out))
    assert status == 0, err
    md = (out / "leaderboard.md").read_text()
    assert printed.startswith(md.rstrip("\n"))
    lines = md.splitlines()
    head = lines[lines.index("## S4 test") + 2]
    assert head.split(" | ")[:3] == [
        "| Model",
        "Official per frame, test batch 4 (AVSBench): mIoU",
        "Official per frame, test batch 4 (AVSBench): F",
    ]
    assert "Dataset level J&F (DDESeg): J" in head and "a_key_no_group_names" not in md
    assert "CAVP" not in head  # no file has CAVP's keys: that group is left out
    row_a = lines[lines.index("## S4 test") + 4]
    row_b = lines[lines.index("## S4 test") + 5]
    # x 100, two decimals, the best of each column in bold, '-' where a file has no value
    assert row_a.startswith("| tpavi pvt_v2_b5 S4_best.pth | 78.78 | **88.00** | **79.00** |")
    assert row_b.startswith("| CAVP (their masks) | **80.12** | 87.00 | - |")
    assert row_b.endswith("| **90.50** | **95.00** |")
    avss_head = lines[lines.index("## AVSS test") + 2]
    assert "v1s mIoU" in avss_head and "v1m mIoU" not in avss_head  # no file has v1m
    assert lines[lines.index("## AVSS test") + 4].endswith("| 30.00 | 35.00 | 10.00 | 15.00 |")

    with open(out / "leaderboard.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == [
        "tpavi pvt_v2_b5 S4_best.pth",
        "CAVP (their masks)",
        "avsegformer resnet50",
    ]
    assert float(table[0]["official_b4:miou_test_batch_4"]) == 0.7878
    assert table[1]["official_b2:miou_test_batch_2"] == ""
    assert float(table[2]["avss_subsets:subsets.v2.fscore"]) == 0.15
    assert table[2]["official_b4:miou_test_batch_4"] == ""  # S4 groups do not apply to AVSS

    charts = sorted(p.name for p in (out / "charts").iterdir())
    assert charts == [
        "avss_test_avss_subsets.png",
        "avss_test_official.png",
        "s4_test_batch_independent.png",
        "s4_test_dataset_ddeseg.png",
        "s4_test_official_b2.png",
        "s4_test_official_b4.png",
        "s4_test_per_clip.png",
    ]
    for name in charts:
        with Image.open(out / "charts" / name) as image:
            image.load()
            assert image.format == "PNG" and image.width >= 400


def test_every_group_names_distinct_columns_and_a_unique_chart_name():
    names = [g.name for g in PROTOCOL_GROUPS]
    assert len(names) == len(set(names))
    for group in PROTOCOL_GROUPS:
        assert len({c.key for c in group.columns}) == len(group.columns)


def test_mixed_settings_and_splits_make_separate_tables(tmp_path):
    val = dict(S4_A, split="val")
    rows = read_rows([_write(tmp_path, "a.json", S4_A), _write(tmp_path, "v.json", val),
                      _write(tmp_path, "c.json", AVSS)])  # fmt: skip
    tables = build_tables(rows)
    assert [(t.setting, t.split, len(t.rows)) for t in tables] == [
        ("s4", "test", 1),
        ("s4", "val", 1),
        ("avss", "test", 1),
    ]


def test_run_folders_and_a_log_dir_are_searched_for_metrics_json(tmp_path):
    for run in ("S4_20260101-000000", "S4_20260102-000000"):
        (tmp_path / "logs" / run).mkdir(parents=True)
        _write(tmp_path / "logs" / run, "metrics.json", S4_A)
    rows = read_rows([tmp_path / "logs"])
    # the same model twice: each row named by its run folder
    assert [r.name for r in rows] == [
        "tpavi pvt_v2_b5 S4_best.pth [S4_20260101-000000]",
        "tpavi pvt_v2_b5 S4_best.pth [S4_20260102-000000]",
    ]
    assert read_rows([tmp_path / "logs" / "S4_20260101-000000"])[0].metrics["miou"] == 0.7878


def test_audio_condition_is_part_of_the_name(tmp_path):
    rows = read_rows([_write(tmp_path, "s.json", dict(S4_A, swap_audio=True)),
                      _write(tmp_path, "n.json", dict(S4_A, audio="noise"))])  # fmt: skip
    assert [r.name for r in rows] == [
        "tpavi pvt_v2_b5 S4_best.pth (audio: swap)",
        "tpavi pvt_v2_b5 S4_best.pth (audio: noise)",
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found; pass metrics JSON files"),
        ("{not json", "not JSON (Expecting property name"),
        ("[1, 2]", "not a metrics file (a JSON list, not an object)"),
        ('{"metrics": {"loss": 1.0}}', "not a metrics file: no 'metrics' object with a key"),
        ('{"metrics": {"miou": 0.5}}', "says no setting (s4, ms3 or avss)"),
    ],
)
def test_bad_input_is_refused_in_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content)
    good = _write(tmp_path, "good.json", S4_A)
    out = tmp_path / "board"
    status, _, err = _run(capsys, str(good), str(path), "--out", str(out))
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith(f"avsbench: {path}: ") and message in err
    assert not out.exists()  # nothing written before every input is read


def test_a_file_given_twice_is_refused(tmp_path, capsys):
    a = _write(tmp_path, "a.json", S4_A)
    status, _, err = _run(
        capsys, str(a), str(tmp_path / "." / "a.json"), "--out", str(tmp_path / "o")
    )
    assert status == 2 and "given twice" in err


def test_out_is_owned_an_earlier_board_needs_overwrite_and_foreign_files_are_kept(tmp_path, capsys):
    a = _write(tmp_path, "a.json", S4_A)
    out = tmp_path / "board"
    assert _run(capsys, str(a), "--out", str(out))[0] == 0
    status, _, err = _run(capsys, str(a), "--out", str(out))
    assert status == 2 and "--overwrite" in err
    assert _run(capsys, str(a), "--out", str(out), "--overwrite")[0] == 0
    (out / "notes.txt").write_text("mine")
    status, _, err = _run(capsys, str(a), "--out", str(out), "--overwrite")
    assert status == 2 and "notes.txt" in err and err.count("\n") == 1
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_a_real_test_sh_metrics_file_beside_a_hand_written_one(tmp_path, capsys):
    """A tiny random S4 model tested by test.sh on synthetic data: its metrics.json is read
    from the run folder, and every cell equals the file's value."""
    import torch

    from avsbench import config as C
    from avsbench.commands import test as cmd_test
    from avsbench.data.synthetic import make_toy_data
    from avsbench.engine import checkpoint as ckpt_io
    from avsbench.models import registry

    make_toy_data(tmp_path / "data", scale=0.05, settings=("s4",), num_categories=3)
    cfg = C.override(registry.synthetic(registry.preset("s4")),
                     {"data.image_size": 64, "model.arch.decoder_channels": 16})  # fmt: skip
    torch.manual_seed(0)
    model = registry.build_model_for(cfg)
    weights = tmp_path / "S4_best.pth"
    ckpt_io.atomic_save(ckpt_io.make_checkpoint(model.state_dict(), C.to_dict(cfg), epoch=0,
                        best_miou=0.0, history=[], with_rng=False), weights)  # fmt: skip
    root = tmp_path / "data" / "Single-source"
    logs = tmp_path / "logs"
    flags = ["--synthetic", "--data_root", str(root), "--weights", str(weights), "--image_size",
             "64", "--num_workers", "0", "--device", "cpu", "--log_dir", str(logs)]  # fmt: skip
    status = cmd_test.main("s4", flags)
    assert status == 0
    (run,) = (tmp_path / "logs").iterdir()
    real = json.loads((run / "metrics.json").read_text())["metrics"]
    other = _write(tmp_path, "b.json", S4_B)
    capsys.readouterr()
    assert _run(capsys, str(run), str(other), "--out", str(tmp_path / "board"))[0] == 0
    with open(tmp_path / "board" / "leaderboard.csv", newline="") as f:
        first = next(csv.DictReader(f))
    assert first["model"] == "tpavi resnet18 S4_best.pth" and first["setting"] == "s4"
    for group in PROTOCOL_GROUPS:
        for column in group.columns:
            header = f"{group.name}:{column.key}"
            if column.key in real and "s4" in group.settings:
                assert float(first[header]) == real[column.key], header
    md = (tmp_path / "board" / "leaderboard.md").read_text()
    assert f"| tpavi resnet18 S4_best.pth | {100 * real['miou_test_batch_4']:.2f}" in md.replace(
        "**", ""
    )
    assert (tmp_path / "board" / "charts" / "s4_test_per_clip.png").is_file()


def test_an_out_that_cannot_be_made_is_one_line(tmp_path, capsys):
    a = _write(tmp_path, "a.json", S4_A)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "board"):  # a file, a folder under a file
        status, _, err = _run(capsys, str(a), "--out", str(out))
        assert status == 2 and err.count("\n") == 1 and str(blocker) in err, err
    assert blocker.read_text() == "x"


def test_full_disk_and_read_only_out_are_one_line_and_leave_nothing(tmp_path, capsys):
    """A real full tmpfs (the charts do not fit) and a real read-only one (skipped where
    mounting is refused)."""
    from tests.mounts import fill, tmpfs

    a = _write(tmp_path, "a.json", S4_A)
    with tmpfs(tmp_path / "full", "1m") as disk:
        fill(disk, leave=20_000)
        before = sorted(p.name for p in disk.iterdir())
        status, _, err = _run(capsys, str(a), "--out", str(disk / "board"))
        assert status == 2 and err.count("\n") == 1 and "No space left" in err, err
        assert sorted(p.name for p in disk.iterdir()) == before  # no temporary folder left
    with tmpfs(tmp_path / "ro", read_only=True) as disk:
        status, _, err = _run(capsys, str(a), "--out", str(disk / "board"))
        assert status == 2 and err.count("\n") == 1 and "Read-only file system" in err, err
