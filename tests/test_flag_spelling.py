"""Every option of every command's parser is accepted spelled with `_` and with `-`
(`avsbench.flag_parser`): the avsbench sub-commands (predict, preprocess, make-toy-data,
train, test, check-data, leaderboard, evaluate) and the train.sh / test.sh parsers of every
setting; and what predict's --help opens with is written for users."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from avsbench import cli
from avsbench import config as C
from avsbench.engine import options as O
from avsbench.flag_parser import normalise

BASE = {"predict": ["v.mp4", "--weights", "w.pth"], "preprocess": ["--setting", "s4"],
        "train": ["--setting", "s4"], "test": ["--setting", "s4"],
        "check-data": ["root", "--setting", "s4"], "leaderboard": ["m.json"],
        "download": ["avsegformer-s4-pvt"],
        "maskige": ["v.mp4", "--sam_weights", "w.pth"],
        "evaluate": ["preds", "--setting", "s4", "--data_root", "root"]}  # fmt: skip


def _parsers() -> list[tuple[str, argparse.ArgumentParser, list[str]]]:
    sub = cli.build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    found = [(name, parser, BASE.get(name, [])) for name, parser in sub.choices.items()]
    for setting in C.SETTINGS:
        found.append((f"train.sh {setting}", O.build_train_parser(setting), []))
        found.append((f"test.sh {setting}", O.build_test_parser(setting), []))
    return found


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | None:
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            args, rest = parser.parse_known_args(argv)
        except SystemExit:
            return None
    return args if not rest else None


def _cases() -> list[tuple[str, argparse.ArgumentParser, list[str], argparse.Action, str]]:
    cases = []
    for name, parser, base in _parsers():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                if option.startswith("--"):
                    cases.append((name, parser, base, action, option))
    return cases


CASES = _cases()


@pytest.mark.parametrize(
    ("name", "parser", "base", "action", "option"),
    CASES,
    ids=[f"{c[0]} {c[4]}" for c in CASES],
)
def test_every_option_in_both_spellings(name, parser, base, action, option):
    values: list[list[str]] = [[]] if action.nargs == 0 else []
    if action.choices:
        values += [[str(c)] for c in action.choices if c != action.default][:1]
    values += [["2"], ["64"], ["0.5"], ["x.pth"]]
    for value in values:  # the first value the option itself accepts
        expected = _parse(parser, [*base, option, *value])
        if expected is not None:
            break
    else:
        pytest.fail(f"{name}: found no value that {option} accepts")
    assert getattr(expected, action.dest) != action.default or action.nargs == 0
    for spelling in (option.replace("-", "_"), option.replace("_", "-")):
        spelling = "--" + spelling[2:]
        assert _parse(parser, [*base, spelling, *value]) == expected, spelling
        if value and action.nargs in (None, "?"):
            assert _parse(parser, [*base, f"{spelling}={value[0]}"]) == expected, spelling


def test_values_and_words_after_a_double_dash_are_left_alone():
    options = ["--session_name", "--out"]
    argv = ["--session-name", "--my-run", "--out=a-b_c", "--", "--session-name"]
    assert normalise(argv, options) == [
        "--session_name", "--my-run", "--out=a-b_c", "--", "--session-name"
    ]  # fmt: skip


def test_an_unknown_flag_is_still_refused(capsys):
    with pytest.raises(SystemExit):
        O.build_test_parser("s4").parse_args(["--vggish-weight-file", "x"])
    assert "unrecognized arguments: --vggish-weight-file" in capsys.readouterr().err


def test_predict_help_is_written_for_users(capsys):
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    text = capsys.readouterr().out
    description = text.split("\n\n")[1]
    assert description.startswith("Segment the sounding objects of a video file")
    assert "orchestration" not in text and "avsbench.predict" not in text
