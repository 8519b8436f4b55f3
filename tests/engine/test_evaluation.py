"""Evaluation: official batches, swapped audio; the test command on official checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from avsbench.commands import test as cmd_test
from avsbench.data.datasets import build_dataset
from avsbench.engine import evaluate as E
from avsbench.engine.distributed import DistInfo
from avsbench.engine.embeddings import AudioEmbedder
from avsbench.metrics import BinaryMetrics
from avsbench.models import registry
from avsbench.models.tpavi.model import TPAVIOutput
from tests.golden_files import STATE_DICTS

SPEC = STATE_DICTS


class BrightnessModel(nn.Module):
    """Predicts 'foreground' from frame brightness: a deterministic stand-in model."""

    def forward(self, frames, audio_emb, frame_valid=None):
        logits = frames.mean(1, keepdim=True) * 4.0 + audio_emb[:, :1, None, None] * 0.0
        return TPAVIOutput(logits=logits, visual_maps=[logits] * 4, audio_maps=[None] * 4)


class ZeroAudio(nn.Module):
    def forward(self, x):
        return torch.zeros(x.shape[0], 128)


def test_evaluate_updates_once_per_official_test_batch(s4_toy):
    data = build_dataset("s4", s4_toy, "test", image_size=64)
    embedder = AudioEmbedder(ZeroAudio(), "cpu")
    results = {}
    for batch_size in (1, 4):
        loader = E.build_eval_loader(data, batch_size, DistInfo(), num_workers=0)
        results[batch_size] = E.evaluate(
            BrightnessModel(), embedder, loader, "s4", torch.device("cpu")
        )
        # independent computation: the official metric over batches of `batch_size` clips
        expected = BinaryMetrics()
        for start in range(0, len(data), batch_size):
            clips = [data[i] for i in range(start, min(start + batch_size, len(data)))]
            frames = torch.cat([c["frames"] for c in clips])  # [n*5, 3, S, S]
            masks = torch.cat([c["masks"] for c in clips])  # [n*5, S, S]
            expected.update(frames.mean(1) * 4.0, masks)
        assert results[batch_size] == pytest.approx(expected.compute(), abs=1e-12)
    assert results[1]["num_batches"] == len(data) and results[4]["num_batches"] == 1
    # the per-frame variant does not depend on the batch size
    assert results[1]["miou_per_frame"] == pytest.approx(results[4]["miou_per_frame"], abs=1e-12)


def test_swapped_audio_is_a_derangement():
    clips = [{"audio": torch.full((2,), float(i)), "video_id": f"v{i}", "category": "c",
              "frames": torch.full((1,), float(i))} for i in range(5)]  # fmt: skip
    swapped = E.SwappedAudio(clips)
    donors = [swapped.donor(i) for i in range(5)]
    assert sorted(donors) == list(range(5)) and all(d != i for i, d in enumerate(donors))
    s = swapped[1]
    assert s["frames"][0] == 1 and s["audio"][0] == donors[1] and s["audio_id"] == f"v{donors[1]}"
    with pytest.raises(ValueError, match="at least 2 clips"):
        E.SwappedAudio(clips[:1])


def test_test_without_a_trained_model_says_what_to_do(tmp_path, s4_toy, capsys):
    status = cmd_test.main("s4", ["--synthetic", "--data_root", str(s4_toy),
                                  "--train_log_dir", str(tmp_path)])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and "no trained model to test: no S4_best.pth under" in err
    assert "bash train.sh --synthetic" in err and "--weights PATH" in err


def _official_from_tsv(model, tsv: Path) -> dict[str, torch.Tensor]:
    """A random official state dict in the exact layout of `tsv` (names, shapes, order),
    with the values of `model` (so BatchNorm statistics are sensible)."""
    from avsbench.models.tpavi.official_names import to_official_state_dict

    values = to_official_state_dict(model)
    layout = [line.split("\t") for line in tsv.read_text().splitlines() if line.strip()]
    out = {}
    for name, shape in layout:
        tensor = values[name].clone()
        assert str(tuple(tensor.shape)).replace(" ", "") == shape.replace(" ", ""), name
        out[name] = tensor
    assert set(out) == set(values)
    return out


@pytest.mark.slow
def test_official_checkpoint_is_detected_and_loaded(tmp_path, s4_toy, vggish_file):
    """The suite's one file of a published size (366 MB, every value of the model): the
    other official files of the tests hold their values in 2 MB (tests/state_dict_files.py).
    Official checkpoints hold no VGGish: the session's VGGish file goes with it."""
    from avsbench.models.backbones.vggish import build_vggish
    from avsbench.models.registry import build_model

    torch.manual_seed(1)
    model = build_model("s4", "resnet50", decoder_channels=256).eval()
    weights = tmp_path / "S4_best.pth"
    torch.save(_official_from_tsv(model, SPEC / "avs_s4_resnet.tsv"), weights)
    out_json = tmp_path / "metrics.json"
    status = cmd_test.main("s4", ["--synthetic", "--data_root", str(s4_toy), "--weights",
                                  str(weights), "--image_size", "64", "--num_workers", "0",
                                  "--log_dir", str(tmp_path / "logs"), "--out_json",
                                  str(out_json), "--vggish_weights", str(vggish_file)])  # fmt: skip
    assert status == 0
    result = json.loads(out_json.read_text())
    assert result["checkpoint_kind"] == "official_tpavi" and result["test_batch_size"] == 4
    cfg = registry.config_from_dict(result["config"])
    assert cfg.model.backbone == "resnet50" and cfg.model.arch.decoder_channels == 256

    # the same numbers from the model itself: the file was loaded exactly
    data = build_dataset("s4", s4_toy, "test", image_size=64)
    embedder = AudioEmbedder(build_vggish(cfg.model), "cpu")
    loader = E.build_eval_loader(data, 4, DistInfo(), num_workers=0)
    direct = E.evaluate(model, embedder, loader, "s4", torch.device("cpu"),
                        official_batch_sizes=cfg.eval.official_batch_sizes,
                        protocols=True)  # fmt: skip
    # test.sh adds the false-positive rates of --audio (commands/test.py collects them)
    robust = {k: result["metrics"].pop(k) for k in ("fpr", "fpr_per_frame")}
    assert all(0.0 <= v <= 1.0 for v in robust.values())
    assert result["metrics"] == pytest.approx(direct, abs=1e-9)


class ColourClasses(nn.Module):
    """AVSS stand-in: a fixed random 1x1 convolution from the frame colours to 71 classes,
    background (class 0) favoured so that it is often right."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 71, 1)
        with torch.no_grad():
            self.conv.bias[0] += 1.0

    def forward(self, frames, audio_emb, frame_valid=None):
        logits = self.conv(frames) * 4.0 + audio_emb[:, :1, None, None] * 0.0
        return TPAVIOutput(logits=logits, visual_maps=[logits] * 4, audio_maps=[None] * 4)


def test_avss_per_subset_metrics_equal_each_subset_evaluated_alone(avss_toy):
    """The test command's AVSS per-subset numbers (v1s, v1m, v2) are those of an
    evaluation run on that subset's clips alone; the whole-set numbers are unchanged."""
    data = build_dataset("avss", avss_toy, "test", image_size=64)
    embedder = AudioEmbedder(ZeroAudio(), "cpu")
    model = ColourClasses()

    def run(dataset, per_subset):
        loader = E.build_eval_loader(dataset, 3, DistInfo(), num_workers=0)  # mixes subsets
        return E.evaluate(model, embedder, loader, "avss", torch.device("cpu"),
                          per_subset=per_subset)  # fmt: skip

    result = run(data, per_subset=True)
    whole = run(data, per_subset=False)
    labels = [label for _, label in data.rows]
    assert set(labels) == {"v1s", "v1m", "v2"}
    assert set(result["subsets"]) == {"v1s", "v1m", "v2"}
    for key in ("miou", "fscore", "miou_present_classes", "per_class_iou", "num_frames"):
        assert result[key] == pytest.approx(whole[key], abs=1e-12)
    for subset, got in result["subsets"].items():
        indices = [i for i, label in enumerate(labels) if label == subset]
        alone = run(torch.utils.data.Subset(data, indices), per_subset=False)
        assert got["num_clips"] == len(indices)
        for key in ("miou", "fscore", "miou_present_classes", "fscore_present_classes"):
            assert got[key] == pytest.approx(alone[key], abs=1e-12), (subset, key)
    # the subsets really differ (otherwise the test could not tell them apart)
    assert len({round(v["miou"], 9) for v in result["subsets"].values()}) > 1


def test_avss_console_table_has_a_row_per_subset_and_the_whole_set():
    metrics = {"miou": 0.5, "fscore": 0.25, "num_frames": 30}
    metrics |= {"miou_present_classes": 0.75, "fscore_present_classes": 0.5}
    part = {"miou_present_classes": 0.0, "fscore_present_classes": 0.0}
    metrics["subsets"] = {
        "v1s": {"miou": 0.125, "fscore": 0.0625, "num_frames": 10, "num_clips": 1} | part,
        "v2": {"miou": 0.875, "fscore": 0.4375, "num_frames": 20, "num_clips": 2} | part,
    }
    lines = cmd_test.format_table(metrics, "AVSS").splitlines()
    keep = ("v1s", "v2 ", "all")
    rows = {line.split()[0]: line.split()[1:] for line in lines if line[:3] in keep}
    assert rows["v1s"][:4] == ["1", "10", "0.1250", "0.0625"]
    assert rows["v2"][:4] == ["2", "20", "0.8750", "0.4375"]
    assert rows["all"][:4] == ["3", "30", "0.5000", "0.2500"]


def test_official_metrics_at_sub_batches_equal_a_run_at_that_batch(s4_toy):
    """test batch 4 with official_batch_sizes (4, 2) on 7 clips (batches 4 + 3): the batch-2
    values equal a test run at batch 2 (batches 2, 2, 2, 1) and a loop over those batches."""
    from torch.utils.data import ConcatDataset, Subset

    data = build_dataset("s4", s4_toy, "test", image_size=64)
    clips = Subset(ConcatDataset([data] * 8), range(7))
    embedder = AudioEmbedder(ZeroAudio(), "cpu")
    cpu = torch.device("cpu")

    def run(batch_size, sizes=()):
        loader = E.build_eval_loader(clips, batch_size, DistInfo(), num_workers=0)
        return E.evaluate(BrightnessModel(), embedder, loader, "s4", cpu,
                          official_batch_sizes=sizes)  # fmt: skip

    at4 = run(4, (4, 2))
    at2 = run(2)
    assert at4["miou_test_batch_2"] == pytest.approx(at2["miou"], abs=1e-12)
    assert at4["fscore_test_batch_2"] == pytest.approx(at2["fscore"], abs=1e-12)
    assert at4["miou_test_batch_4"] == at4["miou"] and at4["fscore_test_batch_4"] == at4["fscore"]
    expected = BinaryMetrics()
    for start in range(0, 7, 2):
        group = [clips[i] for i in range(start, min(start + 2, 7))]
        frames = torch.cat([c["frames"] for c in group])
        expected.update(frames.mean(1) * 4.0, torch.cat([c["masks"] for c in group]))
    assert at4["miou_test_batch_2"] == pytest.approx(expected.compute()["miou"], abs=1e-12)
    assert at4["fscore_test_batch_2"] == pytest.approx(expected.compute()["fscore"], abs=1e-12)
    assert at2["num_batches"] == 4 and at4["num_batches"] == 2
    assert not any(key.startswith("miou_test_batch") for key in at2)  # none asked
