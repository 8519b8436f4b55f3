"""Negative audio of AVSBench-Robust: silence, noise and an off-screen sound, per clip.

Follows `jiali-home/AVSBench-Robust` (Li et al. 2025, "Do Audio-Visual Segmentation Models
Truly Segment Sounding Objects?"), `dataset_generation/audio_processing.py` at commit
03e925d, seed 42 in their paper. What that script writes, and what is kept here:

- silence: `pydub.AudioSegment.silent(5000)`, 5 s of int16 zeros at pydub's default
  11025 Hz, one file for the whole dataset. Here: zeros, as long as the clip's audio.
- noise: `np.random.uniform(-1, 1, 44100 * 5)` (float64) handed to
  `AudioSegment(samples.tobytes(), frame_rate=44100, sample_width=2, channels=1)`: the
  float64 BYTES are read as int16 words, so the wav holds 4 words per draw (20 s at
  44.1 kHz): three words of random mantissa bits (uniform over int16, full scale) and one
  holding the sign, exponent and top mantissa bits (about +-16 300). Their feature step
  reads the first 5 s. Here: exactly those words (`noise_waveform`), first clip-length
  seconds; one draw stream per clip, seeded by (seed, video id) so that a clip gets the
  same noise in any order, batch or process (theirs is one global stream in directory
  order, which cannot be reproduced file by file).
- off-screen ("misaligned", class contrast): S4 maps each category to a broad group
  (music, human, animal, device); a clip gets the audio of a random clip of a random
  category whose group is neither its own nor its group's "least suitable contrast"
  (music <-> human, animal -> human, device -> music in their table); a category outside
  the map, or no such category, falls back to any other category. MS3 has no categories
  in this project's layouts (their MS3 rule reads AVSS metadata): it falls back, as
  theirs does when no contrast exists, to a random other clip. Here the random choices
  come from `random.Random` seeded by (seed, video id).

Their negatives' log-mels come from librosa at 22.05 kHz (`extract_log_mel_features`),
not from VGGish's front end: `robust_log_mel` reproduces it with numpy/scipy (STFT,
Slaney mel filters, power_to_db, per-example standardisation, zero padding to 96 frames);
it differs from librosa only in the resampler (scipy polyphase, where librosa 0.10+ uses
soxr) and in precision (float64 here, float32 filters and samples in librosa). The
default front end for negatives is VGGish's (`avsbench.data.audio`), the one the models
were trained with.
"""

from __future__ import annotations

import random
import zlib
from functools import lru_cache
from math import gcd
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from avsbench.data import audio as A
from avsbench.errors import AVSDataError

NEGATIVES = ("silence", "noise", "offscreen")
FRONTENDS = ("vggish", "robust")  # VGGish's log-mel (default) or AVSBench-Robust's librosa one
DEFAULT_SEED = 42  # the seed of the paper

SILENCE_RATE = 11025  # Hz: pydub's AudioSegment.silent default frame rate
NOISE_RATE = 44100  # Hz: the frame rate their noise wav is written at
NOISE_WORDS_PER_DRAW = 4  # a float64 draw is read as four int16 words

# The AVSBench-Robust log-mel (librosa defaults unless named)
ROBUST_RATE = 22050  # Hz: librosa.load's default sr
ROBUST_N_FFT = 1024
ROBUST_HOP = 512
ROBUST_N_MELS = 64
ROBUST_FRAMES = 96  # frames per example after zero padding (44 are computed per second)
ROBUST_AMIN = 1e-10  # power_to_db: floor of the power
ROBUST_TOP_DB = 80.0  # power_to_db: the dynamic range kept below the maximum

# Their S4 category -> broad group, and the group each one must not take audio from
S4_GROUPS = {
    **dict.fromkeys(
        [
            "playing_acoustic_guitar",
            "playing_glockenspiel",
            "playing_piano",
            "playing_tabla",
            "playing_ukulele",
            "playing_violin",
        ],
        "music",
    ),  # fmt: skip
    **dict.fromkeys(["baby_laughter", "female_singing", "male_speech"], "human"),
    **dict.fromkeys(
        [
            "cat_meowing",
            "coyote_howling",
            "dog_barking",
            "horse_clip-clop",
            "lions_roaring",
            "mynah_bird_singing",
        ],
        "animal",
    ),  # fmt: skip
    **dict.fromkeys(
        [
            "driving_buses",
            "helicopter",
            "race_car",
            "ambulance_siren",
            "cap_gun_shooting",
            "chainsawing_trees",
            "lawn_mowing",
            "typing_on_computer_keyboard",
        ],
        "device",
    ),  # fmt: skip
}
S4_LEAST_SUITABLE = {"music": "human", "human": "music", "animal": "human", "device": "music"}


def clip_seed(seed: int, video_id: str, negative: str) -> int:
    """The seed of one clip's negative: a function of (seed, video id, kind) only."""
    return zlib.crc32(f"{seed}/{negative}/{video_id}".encode())


# ---------------------------------------------------------------------------------------
# Waveforms
# ---------------------------------------------------------------------------------------
def silence_waveform(seconds: float) -> tuple[np.ndarray, int]:
    """int16 zeros [seconds * 11025] at 11025 Hz (pydub's silent segment)."""
    return np.zeros(int(round(seconds * SILENCE_RATE)), dtype=np.int16), SILENCE_RATE


def noise_waveform(seconds: float, seed: int) -> tuple[np.ndarray, int]:
    """Their noise wav's first `seconds`: int16 [seconds * 44100] at 44.1 kHz.

    The words of float64 draws `RandomState(seed).uniform(-1, 1, 44100 * seconds)` read
    as little-endian int16, as pydub writes them (module doc)."""
    n = int(round(seconds * NOISE_RATE))
    draws = np.random.RandomState(seed).uniform(-1.0, 1.0, n)  # float64 [n]
    words = np.frombuffer(draws.astype("<f8").tobytes(), dtype="<i2")  # [4n]
    return words[:n].copy(), NOISE_RATE


def offscreen_donor(categories: list[str], index: int, rng: random.Random) -> int:
    """The clip whose audio clip `index` gets (module doc): a random clip of a random
    contrasting category; else of any other category; else any other clip."""
    own = categories[index]
    present = sorted({c for c in categories if c})
    group = S4_GROUPS.get(own)
    allowed: list[str] = []
    if group is not None:
        avoid = {group, S4_LEAST_SUITABLE[group]}
        allowed = [c for c in present if S4_GROUPS.get(c) not in avoid and c in S4_GROUPS]
    if not allowed and own:
        allowed = [c for c in present if c != own]
    if allowed:
        category = rng.choice(allowed)
        return rng.choice([i for i, c in enumerate(categories) if c == category])
    others = [i for i in range(len(categories)) if i != index]
    if not others:
        raise ValueError("off-screen audio needs at least 2 clips in the split")
    return rng.choice(others)


# ---------------------------------------------------------------------------------------
# Front ends
# ---------------------------------------------------------------------------------------
def vggish_log_mel(waveform: np.ndarray, rate: int, n: int) -> np.ndarray:
    """Waveform -> n VGGish log-mel examples float32 [n, 1, 96, 64] (`avsbench.data.audio`,
    padded by repeating the last example as the S4/MS3 preprocessing does)."""
    return A.clip_log_mel(A.log_mel_examples(waveform, rate), n, pad="repeat")[:, None]


def slaney_hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """librosa's default (Slaney) mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-300) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, mel)


def slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0)),
                    mel * (200.0 / 3))  # fmt: skip


@lru_cache(maxsize=1)
def slaney_mel_filters() -> np.ndarray:
    """librosa.filters.mel(sr=22050, n_fft=1024, n_mels=64): float64 [64, 513], Slaney
    scale between 0 Hz and 11025 Hz, each triangle scaled by 2 / its width in Hz."""
    fft_hz = np.linspace(0.0, ROBUST_RATE / 2.0, 1 + ROBUST_N_FFT // 2)  # [513]
    edges = np.linspace(slaney_hz_to_mel(0.0), slaney_hz_to_mel(ROBUST_RATE / 2.0),
                        ROBUST_N_MELS + 2)  # fmt: skip
    edges_hz = slaney_mel_to_hz(edges)  # [66]
    widths = np.diff(edges_hz)  # [65]
    ramps = edges_hz[:, None] - fft_hz[None, :]  # [66, 513]
    rising = -ramps[:-2] / widths[:-1, None]  # [64, 513]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    weights.setflags(write=False)
    return weights


def robust_mel_db(segment: np.ndarray) -> np.ndarray:
    """One second at 22.05 kHz -> their example before padding, float64 [64, F].

    librosa.feature.melspectrogram (centred STFT with zero padding of n_fft / 2, periodic
    Hann window, power 2), power_to_db(ref=1, amin=1e-10, top_db=80), then
    (x - mean) / std when std > 0."""
    half = ROBUST_N_FFT // 2
    padded = np.pad(np.asarray(segment, dtype=np.float64), (half, half))
    frames = 1 + (len(padded) - ROBUST_N_FFT) // ROBUST_HOP
    windows = np.lib.stride_tricks.sliding_window_view(padded, ROBUST_N_FFT)[::ROBUST_HOP]
    windows = windows[:frames]  # [F, 1024]
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(ROBUST_N_FFT) / ROBUST_N_FFT)
    power = np.abs(np.fft.rfft(windows * hann, axis=1)) ** 2  # [F, 513]
    mel = slaney_mel_filters() @ power.T  # [64, F]
    db = 10.0 * np.log10(np.maximum(ROBUST_AMIN, mel))  # ref = 1: minus 10 log10(1) = 0
    db = np.maximum(db, db.max() - ROBUST_TOP_DB)
    if db.std() > 0:
        db = (db - db.mean()) / db.std()
    return db


def robust_log_mel(waveform: np.ndarray, rate: int, n: int) -> np.ndarray:
    """AVSBench-Robust's `extract_log_mel_features` for an n-second clip: float32
    [n, 1, 96, 64]. The first n seconds at 22.05 kHz (zero padded), split into n equal
    parts, each `robust_mel_db`, zero padded (or cut) to 96 frames, frames first."""
    samples = A.to_float_mono(waveform)
    if rate != ROBUST_RATE:
        from scipy.signal import resample_poly

        common = gcd(ROBUST_RATE, int(rate))
        samples = resample_poly(samples, ROBUST_RATE // common, int(rate) // common)
    total = ROBUST_RATE * n
    samples = np.pad(samples[:total], (0, max(0, total - len(samples))))
    out = np.zeros((n, ROBUST_N_MELS, ROBUST_FRAMES))
    for i, segment in enumerate(np.array_split(samples, n)):
        db = robust_mel_db(segment)[:, :ROBUST_FRAMES]  # [64, <=96]
        out[i, :, : db.shape[1]] = db
    return np.ascontiguousarray(out.transpose(0, 2, 1)[:, None], dtype=np.float32)


def log_mel(frontend: str, waveform: np.ndarray, rate: int, n: int) -> np.ndarray:
    """The negative's examples [n, 1, 96, 64] through `frontend` (vggish | robust)."""
    if frontend == "vggish":
        return vggish_log_mel(waveform, rate, n)
    if frontend == "robust":
        return robust_log_mel(waveform, rate, n)
    raise ValueError(f"unknown negative front end {frontend!r}; valid: {', '.join(FRONTENDS)}")


# ---------------------------------------------------------------------------------------
# The dataset wrapper
# ---------------------------------------------------------------------------------------
def clip_wav(dataset: Dataset, index: int) -> tuple[np.ndarray, int]:
    """The wav of clip `index` of an S4, MS3 or AVSS dataset (int16, rate)."""
    from avsbench.data.datasets import AVSSDataset, MS3Dataset, S4Dataset

    lay = getattr(dataset, "layout", None)
    if isinstance(dataset, S4Dataset):
        name, category = dataset.rows[index]
        path = lay.wav(dataset.split, category, name)
    elif isinstance(dataset, MS3Dataset):
        path = lay.wav(dataset.split, dataset.rows[index])
    elif isinstance(dataset, AVSSDataset):
        uid, label = dataset.rows[index]
        path = lay.wav(label, uid)
    else:
        raise AVSDataError(f"--negative_frontend robust needs the clips' wavs: {dataset!r}")
    if not path.is_file():
        raise AVSDataError(
            f"{path}: missing audio; --audio offscreen --negative_frontend robust reads the "
            "donor clip's wav (or use the default --negative_frontend vggish)"
        )
    return A.read_wav(path)


class NegativeAudio(Dataset):
    """`dataset` with each clip's audio replaced by a negative (module doc).

    Frames, masks and validity stay the clip's own: AVSBench-Robust scores negatives
    against the clips' ground truth (mIoU and F) and by the false-positive rate
    (`avsbench.metrics_robust`). Samples gain `audio_id` and `audio_category`, so that the
    embedding cache never serves a clip's own embeddings for a negative (the cache keys
    also hash the log-mel itself): silence and noise are keyed `negative-<kind>-...`,
    an off-screen sound by its donor clip."""

    def __init__(
        self, dataset: Dataset, negative: str, *, frontend: str = "vggish",
        seed: int = DEFAULT_SEED,
    ) -> None:  # fmt: skip
        if negative not in NEGATIVES:
            raise ValueError(f"unknown negative {negative!r}; valid: {', '.join(NEGATIVES)}")
        if frontend not in FRONTENDS:
            raise ValueError(f"unknown front end {frontend!r}; valid: {', '.join(FRONTENDS)}")
        self.dataset, self.negative, self.frontend, self.seed = dataset, negative, frontend, seed
        self.n = len(dataset)  # type: ignore[arg-type]
        self.ids, self.categories = self._clip_names()
        if negative == "offscreen" and self.n < 2:
            raise ValueError("off-screen audio needs at least 2 clips in the split")

    def _clip_names(self) -> tuple[list[str], list[str]]:
        """(video id, category) per clip, from the dataset's rows (no file read) when it
        has them, else from its samples."""
        rows = getattr(self.dataset, "rows", None)
        from avsbench.data.datasets import AVSSDataset, MS3Dataset, S4Dataset

        if isinstance(self.dataset, S4Dataset) and rows is not None:
            return [r[0] for r in rows], [r[1] for r in rows]
        if isinstance(self.dataset, MS3Dataset) and rows is not None:
            return list(rows), [""] * len(rows)
        if isinstance(self.dataset, AVSSDataset) and rows is not None:
            return [r[0] for r in rows], [""] * len(rows)  # the label is a subset, not a sound
        samples = [self.dataset[i] for i in range(self.n)]
        return [s["video_id"] for s in samples], [s.get("category", "") for s in samples]

    def donor(self, index: int) -> int:
        """offscreen: the clip whose audio clip `index` gets."""
        rng = random.Random(clip_seed(self.seed, self.ids[index], "offscreen"))
        return offscreen_donor(self.categories, index, rng)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.dataset[index])
        n = sample["audio"].shape[0]  # examples of the clip (5 S4/MS3, 10 AVSS)
        video_id = self.ids[index]
        if self.negative == "offscreen":
            donor = self.donor(index)
            if self.frontend == "vggish":
                audio = self.dataset[donor]["audio"]
            else:
                audio = torch.from_numpy(robust_log_mel(*clip_wav(self.dataset, donor), n))
            sample["audio_id"] = f"{self.ids[donor]}-{self.frontend}"
            sample["audio_category"] = self.categories[donor] or "_offscreen"
        else:
            if self.negative == "silence":
                waveform, rate = silence_waveform(n)
                sample["audio_id"] = f"negative-silence-{self.frontend}"
            else:
                seed = clip_seed(self.seed, video_id, "noise")
                waveform, rate = noise_waveform(n, seed)
                sample["audio_id"] = f"negative-noise-{self.frontend}-{seed}"
            audio = torch.from_numpy(log_mel(self.frontend, waveform, rate, n))
            sample["audio_category"] = "_negative"
        sample["audio"] = audio
        return sample
