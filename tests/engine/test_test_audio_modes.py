"""test.sh --audio {own,swap,silence,noise,offscreen} (AVSBench-Robust negatives): the
robustness keys, the --swap_audio alias, contradicting flags, every registered method."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from avsbench.commands import test as cmd_test
from avsbench.data.negative_audio import NegativeAudio
from avsbench.engine import checkpoint as ckpt_io
from avsbench.engine import options as O
from avsbench.engine.evaluate import SwappedAudio
from avsbench.models import registry
from avsbench.models.registry import build_model_for
from tests.engine.test_test_outputs import TINY, _test, tiny_config

ROBUST_KEYS = {"fpr", "fpr_per_frame"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from avsbench import config as C

    torch.manual_seed(0)
    cfg = tiny_config()
    path = tmp_path_factory.mktemp("ckpt") / "S4_best.pth"
    state = build_model_for(cfg).state_dict()
    ckpt_io.atomic_save(
        ckpt_io.make_checkpoint(state, C.to_dict(cfg), epoch=0, best_miou=0.0, history=[],
                                with_rng=False), path)  # fmt: skip
    return path


def _parse(*flags: str) -> argparse.Namespace:
    return O.build_test_parser("s4").parse_args(list(flags))


def test_swap_audio_is_an_alias_of_audio_swap_in_both_spellings():
    for flags in (["--swap_audio"], ["--swap-audio"], ["--audio", "swap"],
                  ["--audio=swap", "--swap_audio"]):  # fmt: skip
        assert cmd_test.audio_mode(_parse(*flags)) == "swap"
    assert cmd_test.audio_mode(_parse()) == "own"
    assert cmd_test.audio_mode(_parse("--audio", "noise")) == "noise"
    from avsbench.errors import SetupError

    with pytest.raises(SetupError, match="--swap_audio means --audio swap and contradicts "
                       "--audio silence"):  # fmt: skip
        cmd_test.audio_mode(_parse("--swap_audio", "--audio", "silence"))
    args = _parse("--audio", "offscreen", "--negative-frontend", "robust", "--negative_seed", "7")
    assert (args.negative_frontend, args.negative_seed) == ("robust", 7)
    data = [{"video_id": f"v{i}", "category": f"c{i}"} for i in range(4)]
    assert isinstance(cmd_test.with_test_audio(data, "swap", args), SwappedAudio)
    wrapped = cmd_test.with_test_audio(data, "silence", args)
    assert isinstance(wrapped, NegativeAudio) and wrapped.frontend == "robust"
    assert wrapped.seed == 7 and cmd_test.with_test_audio(data, "own", args) is data


def test_audio_silence_reports_the_robustness_keys(tmp_path, s4_toy, ckpt, capsys, monkeypatch):
    """The model hears silence (what VGGish receives is log(0.01) everywhere), and the FPR
    written is the one of the logits the model gave (an independent mean over frames)."""
    from avsbench import metrics_robust
    from avsbench.engine.embeddings import AudioEmbedder

    heard, logits_seen = [], []
    embed, update = AudioEmbedder.__call__, metrics_robust.FalsePositiveRate.update

    def spy_embed(self, audio, keys=None):
        heard.append(audio.clone())
        return embed(self, audio, keys)

    def spy_update(self, logits, frame_valid=None):
        logits_seen.append(logits.clone())
        return update(self, logits, frame_valid)

    own, silent = tmp_path / "own.json", tmp_path / "silence.json"
    assert _test(s4_toy, ckpt, tmp_path / "logs", "--out_json", str(own)) == 0
    monkeypatch.setattr(AudioEmbedder, "__call__", spy_embed)
    monkeypatch.setattr(metrics_robust.FalsePositiveRate, "update", spy_update)
    assert _test(s4_toy, ckpt, tmp_path / "logs", "--audio", "silence",
                 "--out_json", str(silent)) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "AUDIO: SILENCE (AVSBench-Robust negative)" in out and "FPR: foreground share" in out
    a, b = json.loads(own.read_text()), json.loads(silent.read_text())
    assert (a["audio"], b["audio"]) == ("own", "silence")
    assert (b["swap_audio"], b["negative_frontend"], b["negative_seed"]) == (False, "vggish", None)
    assert ROBUST_KEYS <= set(a["metrics"]) and set(a["metrics"]) == set(b["metrics"])
    audio = torch.cat(heard)  # [clips, 5, 1, 96, 64]
    assert audio.shape[0] == b["num_clips"] and torch.all(audio == torch.log(torch.tensor(0.01)))
    fractions = [(torch.sigmoid(x) > 0.5).double().mean(dim=(1, 2, 3)) for x in logits_seen]
    per_frame = torch.cat(fractions)
    assert per_frame.numel() == 5 * b["num_clips"]
    assert b["metrics"]["fpr_per_frame"] == pytest.approx(float(per_frame.mean()), abs=1e-6)
    per_batch = sum(float(f.mean()) for f in fractions) / len(fractions)
    assert b["metrics"]["fpr"] == pytest.approx(per_batch, abs=1e-6)


def test_swap_audio_and_audio_swap_give_the_same_numbers(tmp_path, s4_toy, ckpt):
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    assert _test(s4_toy, ckpt, tmp_path / "logs", "--swap_audio", "--out_json", str(paths[0])) == 0
    assert _test(s4_toy, ckpt, tmp_path / "logs", "--audio", "swap",
                 "--out_json", str(paths[1])) == 0  # fmt: skip
    a, b = (json.loads(p.read_text()) for p in paths)
    assert a["audio"] == b["audio"] == "swap" and a["swap_audio"] is b["swap_audio"] is True
    assert a["metrics"] == b["metrics"]


def test_contradicting_audio_flags_are_one_line_errors(tmp_path, s4_toy, ckpt, capsys):
    logs = tmp_path / "logs"
    assert _test(s4_toy, ckpt, logs, "--swap_audio", "--audio", "noise") == 2
    err = capsys.readouterr().err
    assert "--swap_audio means --audio swap and contradicts --audio noise" in err
    assert "Traceback" not in err and not logs.exists()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["noise", "offscreen"])
@pytest.mark.parametrize("frontend", ["vggish", "robust"])
def test_each_negative_runs_with_each_front_end(tmp_path, s4_toy, ckpt, mode, frontend):
    out = tmp_path / "m.json"
    assert _test(s4_toy, ckpt, tmp_path / "logs", "--audio", mode, "--negative_frontend",
                 frontend, "--out_json", str(out)) == 0  # fmt: skip
    data = json.loads(out.read_text())
    assert (data["audio"], data["negative_frontend"], data["negative_seed"]) == (
        mode, frontend, 42)  # fmt: skip
    assert ROBUST_KEYS <= set(data["metrics"])


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(registry.METHODS))
def test_every_registered_method_runs_with_a_negative(tmp_path, s4_toy, method):
    """No method is special-cased: each one's tiny model tests with --audio noise."""
    from avsbench import config as C

    torch.manual_seed(0)
    cfg = registry.synthetic(registry.preset("s4", method))  # its own size (VCT: only 384)
    path = tmp_path / "best.pth"
    ckpt_io.atomic_save(
        ckpt_io.make_checkpoint(build_model_for(cfg).state_dict(), C.to_dict(cfg), epoch=0,
                                best_miou=0.0, history=[], with_rng=False), path)  # fmt: skip
    out = tmp_path / "m.json"
    status = cmd_test.main("s4", ["--synthetic", "--data_root", str(s4_toy), "--weights",
                                  str(path), "--image_size", str(cfg.data.image_size),
                                  *TINY[2:], "--log_dir", str(tmp_path / "logs"),
                                  "--audio", "noise", "--out_json", str(out)])  # fmt: skip
    assert status == 0
    data = json.loads(out.read_text())
    assert data["config"]["model"]["method"] == method and ROBUST_KEYS <= set(data["metrics"])


def test_negatives_never_poison_the_embedding_cache(tmp_path, s4_toy, ckpt):
    """own -> noise -> own with one disk cache: the second own run gives the first one's
    numbers, and the cache holds the clips' own entries and one noise entry per clip."""
    cache = tmp_path / "cache"
    runs = [("own", tmp_path / "own1.json"), ("noise", tmp_path / "noise.json"),
            ("own", tmp_path / "own2.json")]  # fmt: skip
    for mode, out in runs:
        assert _test(s4_toy, ckpt, tmp_path / "logs", "--audio", mode, "--cache_audio_embeddings",
                     str(cache), "--out_json", str(out)) == 0  # fmt: skip
    first, noise, second = (json.loads(out.read_text()) for _, out in runs)
    assert first["metrics"] == second["metrics"]
    files = [p.name for p in cache.rglob("*.npy")]
    clips = first["num_clips"]
    assert len(files) == 2 * clips
    assert sum(name.startswith("negative-noise-vggish-") for name in files) == clips


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["ms3", "avss"])
def test_ms3_and_avss_take_negatives_too(tmp_path, request, setting):
    """MS3 and AVSS have no sound category in their layouts: off-screen audio is another
    clip's (their fallback); AVSS counts only real frames in the FPR. The train split: the
    toy MS3 test split has one clip."""
    from avsbench import config as C

    root = request.getfixturevalue(f"{setting}_toy")
    torch.manual_seed(0)
    cfg = C.override(registry.synthetic(registry.preset(setting)), {"data.image_size": 64})
    path = tmp_path / "best.pth"
    ckpt_io.atomic_save(
        ckpt_io.make_checkpoint(build_model_for(cfg).state_dict(), C.to_dict(cfg), epoch=0,
                                best_miou=0.0, history=[], with_rng=False), path)  # fmt: skip
    out = tmp_path / "m.json"
    status = cmd_test.main(setting, ["--synthetic", "--data_root", str(root), "--weights",
                                     str(path), *TINY, "--log_dir", str(tmp_path / "logs"),
                                     "--audio", "offscreen", "--split", "train",
                                     "--out_json", str(out)])  # fmt: skip
    assert status == 0
    data = json.loads(out.read_text())
    assert data["audio"] == "offscreen" and ROBUST_KEYS <= set(data["metrics"])
    assert 0.0 <= data["metrics"]["fpr_per_frame"] <= 1.0
