"""The zoo through the commands a user types: `avsbench models`, `avsbench download`, and
`--weights NAME` in predict and the test.sh / train.sh parsers (a local hub, a tiny
released-layout checkpoint; tests/zoo/conftest.py)."""

from __future__ import annotations

import json

import pytest

from avsbench import cli
from avsbench.engine import options as O
from avsbench.zoo import store
from tests.video_fixtures import make_video


def test_models_lists_the_table_and_what_is_here(hub, tmp_path, capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("tiny-s4-r18 "))
    assert line.split()[-1] == "-"  # not downloaded
    assert "miou_test_batch_2 50 / fscore_test_batch_2 0.600" in line
    assert str(tmp_path / "models") in out

    assert cli.main(["download", "tiny-s4-r18", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "models" / "tiny-s4-r18.pth")
    (tmp_path / "models" / "finetuned.pth").write_bytes(b"mine")
    assert cli.main(["models", "--verify"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("tiny-s4-r18 "))
    assert line.split()[-1] == "verified"
    assert "other checkpoint files there (--weights PATH):\n  finetuned.pth" in out


def test_download_errors_are_one_line(hub, tmp_path, capsys):
    assert cli.main(["download", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("avsbench: no model called 'nope' in the zoo") and "\n" not in err
    assert cli.main(["download", "tiny-wrong-sha", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("avsbench: ") and "kept aside in" in err and "not used" in err


@pytest.mark.parametrize("setting", ["s4", "ms3"])
def test_test_and_train_parsers_take_a_zoo_name(hub, tmp_path, capsys, setting):
    parsers = [O.build_test_parser(setting), O.build_train_parser(setting)]
    for parser in parsers:
        with pytest.raises(SystemExit) as exit_status:
            parser.parse_args(["--weights", "tiny-s4-r18"])
        assert exit_status.value.code == 2
        err = capsys.readouterr().err
        assert "argument --weights: tiny-s4-r18 is not downloaded into" in err
        assert "run `avsbench download tiny-s4-r18`" in err
    path = store.models_dir_of(None) / "tiny-s4-r18.pth"
    assert cli.main(["download", "tiny-s4-r18", "--quiet"]) == 0
    for parser in parsers:
        assert parser.parse_args(["--weights", "tiny-s4-r18"]).weights == str(path)
        assert parser.parse_args(["--weights", "x/y.pth"]).weights == "x/y.pth"  # a path
    if setting == "ms3":
        args = parsers[1].parse_args(["--trained_s4_model_path", "tiny-s4-r18"])
        assert args.trained_s4_model_path == str(path)


@pytest.mark.slow
def test_predict_with_a_zoo_name(hub, tmp_path, capsys):
    video = make_video(tmp_path / "clip.mp4", 1, 8, 64, 48, audio_rate=16000)
    out = tmp_path / "out"
    argv = ["predict", str(video), "--weights", "tiny-s4-r18", "--out", str(out),
            "--device", "cpu", "--no-overlay", "--quiet"]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: tiny-s4-r18 is not downloaded into") and "\n" not in err
    assert not out.exists()
    assert cli.main(["download", "tiny-s4-r18", "--quiet"]) == 0
    assert cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["weights"] == str(tmp_path / "models" / "tiny-s4-r18.pth")
    assert summary["model"]["checkpoint_format"] == "official AVSegFormer"
    assert summary["model"]["vggish"] == "checkpoint"
    assert len(list((out / "masks").glob("*.png"))) == 1
