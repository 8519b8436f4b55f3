"""AVSBench-Robust negatives (avsbench.data.negative_audio) against their definitions in
`jiali-home/AVSBench-Robust` dataset_generation/audio_processing.py (commit 03e925d)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from avsbench.data import audio as A
from avsbench.data import negative_audio as N


def test_silence_is_exact_zeros_at_pydubs_rate():
    waveform, rate = N.silence_waveform(5)
    assert rate == 11025 and waveform.dtype == np.int16 and waveform.shape == (55125,)
    assert not waveform.any()
    # VGGish: log(0 + 0.01) everywhere; robust: power_to_db(0) = 10 log10(1e-10) = -100 on
    # the 44 computed frames (std 0: not standardised), zeros on the 52 padding frames
    assert np.array_equal(N.vggish_log_mel(waveform, rate, 5), np.full((5, 1, 96, 64),
                          np.float32(np.log(0.01))))  # fmt: skip
    robust = N.robust_log_mel(waveform, rate, 5)
    assert robust.shape == (5, 1, 96, 64)
    assert np.all(robust[:, 0, :44] == -100.0) and np.all(robust[:, 0, 44:] == 0.0)


def test_noise_is_the_int16_words_of_their_float64_uniform_draws():
    waveform, rate = N.noise_waveform(5, seed=42)
    assert rate == 44100 and waveform.dtype == np.int16 and len(waveform) == 5 * 44100
    draws = np.random.RandomState(42).uniform(-1, 1, 5 * 44100)
    # pydub: AudioSegment(draws.tobytes(), sample_width=2): 4 int16 words per float64
    words = np.frombuffer(draws.tobytes(), dtype=np.int16)
    assert np.array_equal(waveform, words[: 5 * 44100])
    # word 3 of each draw: sign, 11 exponent bits, 4 mantissa bits of a value in (-1, 1)
    top = waveform[3::4]
    exponent = (top.view(np.uint16) & 0x7FF0) >> 4
    assert np.all(exponent <= 1022)  # |x| < 1
    assert np.array_equal(top < 0, draws[: len(top)] < 0)
    # the three low words are uniform over int16: mean ~0, std ~ 65536 / sqrt(12)
    low = np.stack([waveform[0::4], waveform[1::4], waveform[2::4]]).astype(np.float64)
    assert abs(low.mean()) < 300 and abs(low.std() - 65536 / np.sqrt(12)) < 200
    assert np.array_equal(N.noise_waveform(5, 42)[0], waveform)  # seeded
    assert not np.array_equal(N.noise_waveform(5, 43)[0], waveform)


def test_clip_seeds_depend_on_the_clip_not_on_the_order():
    assert N.clip_seed(42, "a", "noise") == N.clip_seed(42, "a", "noise")
    seeds = {N.clip_seed(42, v, k) for v in "abc" for k in ("noise", "offscreen")}
    assert len(seeds) == 6 and N.clip_seed(43, "a", "noise") != N.clip_seed(42, "a", "noise")


def test_offscreen_follows_their_class_contrast_table():
    categories = ["playing_piano", "male_speech", "dog_barking", "helicopter", "playing_violin"]
    for seed in range(40):
        rng = random.Random(seed)
        # music avoids music and human: animal or device
        assert categories[N.offscreen_donor(categories, 0, rng)] in ("dog_barking", "helicopter")
        # human avoids human and music
        assert categories[N.offscreen_donor(categories, 1, rng)] in ("dog_barking", "helicopter")
        # animal avoids animal and human: music or device
        assert categories[N.offscreen_donor(categories, 2, rng)] in (
            "playing_piano", "helicopter", "playing_violin")  # fmt: skip
        # device avoids device and music: human or animal
        assert categories[N.offscreen_donor(categories, 3, rng)] in ("male_speech", "dog_barking")
    # categories outside their table: any other category; none (MS3): any other clip
    synthetic = ["cat0", "cat0", "cat1", "cat2"]
    donors = {N.offscreen_donor(synthetic, 0, random.Random(s)) for s in range(60)}
    assert donors == {2, 3}
    donors = {N.offscreen_donor(["", "", ""], 1, random.Random(s)) for s in range(60)}
    assert donors == {0, 2}


def test_slaney_filters_match_an_independent_loop():
    weights = N.slaney_mel_filters()
    assert weights.shape == (64, 513)

    def hz_to_mel(f):  # Slaney's Auditory Toolbox, as librosa (htk=False)
        return f / (200 / 3) if f < 1000 else 15 + np.log(f / 1000) / (np.log(6.4) / 27)

    def mel_to_hz(m):
        return m * 200 / 3 if m < 15 else 1000 * np.exp((m - 15) * np.log(6.4) / 27)

    top = hz_to_mel(11025.0)
    edges = [mel_to_hz(top * i / 65) for i in range(66)]
    for band in (0, 10, 31, 63):
        lo, mid, hi = edges[band : band + 3]
        for k in (0, 5, 40, 200, 512):
            f = k * 11025 / 512
            tri = max(0.0, min((f - lo) / (mid - lo), (hi - f) / (hi - mid)))
            assert weights[band, k] == pytest.approx(tri * 2 / (hi - lo), rel=1e-9, abs=1e-15)


def test_robust_log_mel_of_a_tone_peaks_in_its_band_and_is_standardised():
    rate = 22050
    t = np.arange(5 * rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 2000.0 * t) * 32767).astype(np.int16)
    examples = N.robust_log_mel(tone, rate, 5)  # [5, 1, 96, 64]
    computed = examples[:, 0, :44].astype(np.float64)  # 1 + 22050 // 512 = 44 frames
    assert np.allclose(computed.mean(axis=(1, 2)), 0, atol=1e-5)
    assert np.allclose(computed.std(axis=(1, 2)), 1, atol=1e-5)
    assert np.all(examples[:, 0, 44:] == 0)
    band = int(np.argmax(N.slaney_mel_filters()[:, round(2000 * 1024 / rate)]))
    assert np.all(computed[:, 10:34].mean(axis=1).argmax(axis=1) == band)


class _Clips(Dataset):
    """Clips whose audio says which clip it is (example values = index)."""

    def __init__(self, categories):
        self.categories = categories

    def __len__(self):
        return len(self.categories)

    def __getitem__(self, i):
        return {"audio": torch.full((5, 1, 96, 64), float(i)), "video_id": f"v{i}",
                "category": self.categories[i], "frames": torch.zeros(1)}  # fmt: skip


def test_the_wrapper_keeps_the_clip_and_keys_each_negative_apart():
    clips = _Clips(["cat0", "cat0", "cat1", "cat2"])
    silence = N.NegativeAudio(clips, "silence")[1]
    assert silence["video_id"] == "v1" and silence["category"] == "cat0"
    assert torch.equal(silence["audio"], torch.full((5, 1, 96, 64), float(np.log(0.01))))
    noise = [N.NegativeAudio(clips, "noise")[i] for i in (0, 1)]
    assert noise[0]["audio_id"] != noise[1]["audio_id"]  # one noise per clip
    assert not torch.equal(noise[0]["audio"], noise[1]["audio"])
    seed = N.clip_seed(42, "v0", "noise")
    expected = A.clip_log_mel(A.log_mel_examples(*N.noise_waveform(5, seed)), 5)[:, None]
    assert torch.equal(noise[0]["audio"], torch.from_numpy(expected))
    off = N.NegativeAudio(clips, "offscreen")
    for i in range(4):
        sample = off[i]
        donor = int(sample["audio"][0, 0, 0, 0])
        assert donor == off.donor(i) and clips.categories[donor] != clips.categories[i]
        assert sample["audio_category"] == clips.categories[donor]
    with pytest.raises(ValueError, match="valid: silence, noise, offscreen"):
        N.NegativeAudio(clips, "music")
