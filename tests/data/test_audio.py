"""VGGish front end: golden values of the published code, an independent float64
implementation, and the safe log-mel file formats."""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from avsbench.data import audio
from avsbench.data.layouts import AVSDataError
from tests.golden_files import GOLDEN as GOLDEN_DIR
from tests.golden_files import require

GOLDEN = GOLDEN_DIR / "logmel.npz"


@pytest.fixture(scope="module")
def golden():
    return np.load(require(GOLDEN))


@pytest.mark.parametrize("key", ["noise16k", "chirp16k_10s", "tail16k"])
def test_golden_16k(golden, key):
    out = audio.log_mel_examples(golden[f"{key}_wave"], int(golden[f"{key}_rate"]))
    ref = golden[f"{key}_logmel"]
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)


def test_golden_stereo44k(golden):
    out = audio.log_mel_examples(golden["stereo44k_wave"], int(golden["stereo44k_rate"]))
    ref = golden["stereo44k_logmel"]
    assert out.shape == ref.shape
    diff = np.abs(out - ref)[..., :62]
    assert np.percentile(diff, 99) <= 0.05
    # with resampy kaiser_best (the published resampler) all bands agree closely
    assert np.abs(out - ref).max() < 1e-3


def independent_log_mel(wave: np.ndarray, rate: int) -> np.ndarray:
    """VGGish definition written from the spec with loops, float64 (16 kHz input only)."""
    assert rate == 16000
    x = wave.astype(np.float64)
    if x.ndim == 2:
        x = x.sum(axis=1) / x.shape[1]
    n_frames = 1 + (len(x) - 400) // 160
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / 400) for n in range(400)])
    spec = np.empty((n_frames, 257))
    for f in range(n_frames):
        seg = np.zeros(512)
        seg[:400] = x[160 * f : 160 * f + 400] * window
        spec[f] = np.abs(np.fft.fft(seg)[:257])

    def mel(hz):
        return 1127.0 * math.log(1.0 + hz / 700.0)

    lo, hi = mel(125.0), mel(7500.0)
    edges = [lo + (hi - lo) * i / 65 for i in range(66)]
    weights = np.zeros((257, 64))
    for k in range(1, 257):  # DC bin keeps weight 0
        m = mel(k * 8000.0 / 256)
        for b in range(64):
            left, centre, right = edges[b], edges[b + 1], edges[b + 2]
            if left < m <= centre:
                weights[k, b] = (m - left) / (centre - left)
            elif centre < m < right:
                weights[k, b] = (right - m) / (right - centre)
    log_mel = np.log(spec @ weights + 0.01)
    n_ex = n_frames // 96
    return np.stack([log_mel[96 * e : 96 * (e + 1)] for e in range(n_ex)])


def test_matches_independent_implementation():
    rng = np.random.default_rng(3)
    wave = (rng.normal(0, 0.2, size=(33000, 2)) * 32767).clip(-32768, 32767).astype(np.int16)
    out = audio.log_mel_examples(wave, 16000)
    ref = independent_log_mel(wave / 32768.0, 16000)
    assert out.shape == ref.shape == (2, 96, 64)
    np.testing.assert_allclose(out, ref, atol=2e-5, rtol=0)


def test_int16_scaling_and_float_passthrough():
    rng = np.random.default_rng(0)
    ints = (rng.normal(0, 0.1, size=16000) * 32767).astype(np.int16)
    a = audio.log_mel_examples(ints, 16000)
    b = audio.log_mel_examples(ints.astype(np.float64) / 32768.0, 16000)
    np.testing.assert_array_equal(a, b)
    # a float waveform is NOT rescaled: x32768 louder -> log-mel differs
    c = audio.log_mel_examples(ints.astype(np.float64), 16000)
    assert np.abs(c - a).min() > 5


def test_example_count_and_short_audio():
    assert audio.log_mel_examples(np.zeros(80000), 16000).shape == (5, 96, 64)
    assert audio.log_mel_examples(np.zeros(audio.MIN_SAMPLES), 16000).shape == (1, 96, 64)
    assert audio.log_mel_examples(np.zeros(audio.MIN_SAMPLES - 1), 16000).shape == (0, 96, 64)
    silent = audio.log_mel_examples(np.zeros(16000), 16000)
    np.testing.assert_allclose(silent, np.log(0.01), rtol=1e-6)


def test_clip_log_mel():
    ex = np.arange(3, dtype=np.float32)[:, None, None] * np.ones((3, 96, 64), np.float32)
    rep = audio.clip_log_mel(ex, 5)
    assert [float(e[0, 0]) for e in rep] == [0, 1, 2, 2, 2]
    zer = audio.clip_log_mel(ex, 5, pad="zeros")
    assert [float(e[0, 0]) for e in zer] == [0, 1, 2, 0, 0]
    assert [float(e[0, 0]) for e in audio.clip_log_mel(ex, 2)] == [0, 1]
    with pytest.raises(ValueError, match="shorter"):
        audio.clip_log_mel(ex[:0], 5)


def test_read_wav_int16_stereo(tmp_path):
    wave = (np.random.default_rng(1).normal(0, 0.1, size=(20000, 2)) * 32767).astype(np.int16)
    sf.write(tmp_path / "a.wav", wave, 16000, subtype="PCM_16")
    read, rate = audio.read_wav(tmp_path / "a.wav")
    assert rate == 16000 and read.dtype == np.int16
    np.testing.assert_array_equal(read, wave)
    with pytest.raises(AVSDataError, match="not found"):
        audio.read_wav(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF....not a wav")
    with pytest.raises(AVSDataError, match="bad.wav"):
        audio.read_wav(tmp_path / "bad.wav")


def test_wav_too_short(tmp_path):
    sf.write(tmp_path / "s.wav", np.zeros(8000, np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AVSDataError, match="too short"):
        audio.wav_to_log_mel(tmp_path / "s.wav")


def test_pkl_round_trip_like_published(tmp_path):
    """A pkl as the published preprocessing writes it (requires_grad, .float())."""
    values = np.random.default_rng(2).normal(size=(5, 96, 64))
    tensor = torch.tensor(values, requires_grad=True)[:, None, :, :].float()
    with open(tmp_path / "x.pkl", "wb") as f:
        pickle.dump(tensor, f)
    loaded = audio.load_log_mel_pkl(tmp_path / "x.pkl")
    assert loaded.dtype == np.float32 and loaded.shape == (5, 1, 96, 64)
    np.testing.assert_array_equal(loaded, values[:, None].astype(np.float32))
    audio.save_log_mel_pkl(tmp_path / "y.pkl", loaded)
    np.testing.assert_array_equal(audio.load_log_mel_pkl(tmp_path / "y.pkl"), loaded)


class _Evil:
    def __init__(self, marker: Path, how: str):
        self.marker, self.how = marker, how

    def __reduce__(self):
        if self.how == "os":
            return (os.system, (f"touch {self.marker}",))
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("how", ["os", "eval"])
def test_malicious_pickle_refused(tmp_path, how):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(_Evil(marker, how), f)
    with pytest.raises(AVSDataError, match="refusing global"):
        audio.load_log_mel_pkl(tmp_path / "evil.pkl")
    assert not marker.exists()
    # sanity: the payload really would have run with plain pickle
    with open(tmp_path / "evil.pkl", "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_malicious_payload_inside_storage_bytes(tmp_path):
    """The inner bytes of _load_from_bytes go through torch.load(weights_only=True)."""
    marker = tmp_path / "pwned2"
    inner = pickle.dumps(_Evil(marker, "os"), protocol=2)

    class Wrapper:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (inner,))

    with open(tmp_path / "evil2.pkl", "wb") as f:
        pickle.dump(Wrapper(), f)
    with pytest.raises(AVSDataError):
        audio.load_log_mel_pkl(tmp_path / "evil2.pkl")
    assert not marker.exists()


def test_pickle_of_non_tensor_refused(tmp_path):
    with open(tmp_path / "list.pkl", "wb") as f:
        pickle.dump([1.0, 2.0], f)
    with pytest.raises(AVSDataError, match="float tensor"):
        audio.load_log_mel_pkl(tmp_path / "list.pkl")


def test_npy_preferred_over_pkl(tmp_path):
    a = np.full((5, 1, 96, 64), 1.5, np.float32)
    b = np.full((5, 1, 96, 64), -2.0, np.float32)
    audio.save_log_mel_pkl(tmp_path / "c.pkl", a)
    np.testing.assert_array_equal(audio.load_log_mel(tmp_path / "c.pkl"), a)
    audio.save_log_mel_npy(tmp_path / "c.pkl", b)  # writes c.npy
    assert (tmp_path / "c.npy").is_file()
    np.testing.assert_array_equal(audio.load_log_mel(tmp_path / "c.pkl"), b)
    with pytest.raises(AVSDataError, match="not found"):
        audio.load_log_mel(tmp_path / "none.pkl")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("fmt", ["pkl", "npy"])
def test_non_finite_log_mel_is_refused_naming_the_file(tmp_path, bad, fmt):
    examples = np.zeros((5, 1, 96, 64), dtype=np.float32)
    examples[3, 0, 10, 7] = bad
    pkl = tmp_path / "clip.pkl"
    if fmt == "pkl":
        audio.save_log_mel_pkl(pkl, examples)
    else:
        audio.save_log_mel_npy(pkl, examples)
    with pytest.raises(AVSDataError, match=rf"clip\.{fmt}: the log-mel holds 1 non-finite"):
        audio.load_log_mel(pkl)


def test_non_finite_log_mel_fails_in_the_dataset(s4_root):
    from avsbench.data.datasets import S4Dataset

    pkl = next((s4_root / "s4_data" / "audio_log_mel" / "train").rglob("*.pkl"))
    examples = audio.load_log_mel_pkl(pkl)
    examples[0, 0, 0, 0] = float("nan")
    audio.save_log_mel_pkl(pkl, examples)
    with pytest.raises(AVSDataError, match=rf"{pkl.name}: the log-mel holds"):
        S4Dataset(s4_root, "train")[0]


def _log_mel(value: float) -> np.ndarray:
    return np.full((5, 1, 96, 64), value, np.float32)


@pytest.mark.parametrize("same_size", [True, False])
def test_a_stale_npy_never_wins_over_a_changed_pkl(tmp_path, same_size):
    pkl = tmp_path / "clip.pkl"
    audio.save_log_mel_pkl(pkl, _log_mel(1.0))
    audio.save_log_mel_npy(pkl, _log_mel(1.0))
    np.testing.assert_array_equal(audio.load_log_mel(pkl), _log_mel(1.0))
    size = pkl.stat().st_size
    changed = _log_mel(7.0) if same_size else np.full((6, 1, 96, 64), 7.0, np.float32)
    audio.save_log_mel_pkl(pkl, changed)  # the official file replaced, the cache not
    assert (pkl.stat().st_size == size) == same_size
    np.testing.assert_array_equal(audio.load_log_mel(pkl), changed)


def test_a_touched_but_unchanged_pkl_keeps_its_npy(tmp_path):
    pkl, npy = tmp_path / "clip.pkl", tmp_path / "clip.npy"
    audio.save_log_mel_pkl(pkl, _log_mel(1.0))
    audio.save_log_mel_npy(pkl, _log_mel(2.0))  # the cache, linked to this .pkl
    later = pkl.stat().st_mtime_ns + 5_000_000_000
    os.utime(pkl, ns=(later, later))  # same bytes, new mtime (a copy, a checkout)
    np.testing.assert_array_equal(audio.load_log_mel(pkl), _log_mel(2.0))
    assert npy.is_file()


def test_an_npy_without_its_link_is_not_trusted_beside_a_pkl(tmp_path):
    pkl = tmp_path / "clip.pkl"
    audio.save_log_mel_pkl(pkl, _log_mel(1.0))
    np.save(tmp_path / "clip.npy", _log_mel(3.0))  # written by something else, no sidecar
    np.testing.assert_array_equal(audio.load_log_mel(pkl), _log_mel(1.0))


def test_the_dataset_reads_the_changed_pkl_not_the_stale_npy(s4_root):
    from avsbench.data.datasets import S4Dataset

    pkl = next((s4_root / "s4_data" / "audio_log_mel" / "train").rglob("*.pkl"))
    audio.save_log_mel_npy(pkl, audio.load_log_mel_pkl(pkl))
    assert pkl.with_suffix(".npy").is_file()
    audio.save_log_mel_pkl(pkl, _log_mel(0.25))
    np.testing.assert_array_equal(S4Dataset(s4_root, "train")[0]["audio"].numpy(), _log_mel(0.25))
