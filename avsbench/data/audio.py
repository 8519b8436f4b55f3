"""The VGGish audio front end (waveform -> log-mel examples), wav reading, log-mel files.

Follows the VGGish input definition of Hershey et al., "CNN architectures for large-scale
audio classification" (ICASSP 2017), as used by torchvggish and by the published AVSBench
code (avsbench_data/README.md, "Log-mel examples"):

    waveform (int16 / 32768, channels averaged, resampled to 16 kHz, resampy kaiser_best)
    -> |STFT|: periodic Hann 400 samples (25 ms), hop 160 (10 ms), FFT 512, no centre pad
    -> 64 triangular HTK-mel bands 125..7500 Hz (DC bin weight 0)
    -> log(mel + 0.01)
    -> non-overlapping examples of 96 frames (0.96 s); a trailing partial one is dropped.

Log-mel files: the official `.pkl` is `pickle.dump` of a float32 torch tensor
[5, 1, 96, 64]. Unpickling runs code named in the file, so `load_log_mel_pkl` uses a
restricted unpickler that admits only the three globals a pickled tensor needs; the safe
cache format is `.npy` (no pickle), preferred when it was computed from the `.pkl` beside
it (a sidecar `<name>.npy.json` records that `.pkl`'s size, mtime and sha256); a `.pkl`
changed since is read instead, so a stale cache never wins.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import logging
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from avsbench.data.layouts import AVSDataError
from avsbench.fileio import atomic_save_npy, atomic_write, atomic_write_json

# ---------------------------------------------------------------------------------------
# VGGish front-end constants (as in torchvggish vggish_params.py)
# ---------------------------------------------------------------------------------------
SAMPLE_RATE = 16000  # Hz; every waveform is resampled to this rate first
INT16_SCALE = 32768.0  # int16 samples are divided by this to lie in [-1, 1)
STFT_WINDOW_SECONDS = 0.025  # analysis window: 25 ms ...
STFT_HOP_SECONDS = 0.010  # ... every 10 ms
WINDOW_SAMPLES = int(round(SAMPLE_RATE * STFT_WINDOW_SECONDS))  # 400
HOP_SAMPLES = int(round(SAMPLE_RATE * STFT_HOP_SECONDS))  # 160
FFT_LENGTH = 2 ** int(np.ceil(np.log2(WINDOW_SAMPLES)))  # 512: next power of two
NUM_SPECTROGRAM_BINS = FFT_LENGTH // 2 + 1  # 257 rfft bins, 0 .. 8000 Hz
NUM_MEL_BINS = 64  # mel bands ...
MEL_MIN_HZ = 125.0  # ... between 125 Hz ...
MEL_MAX_HZ = 7500.0  # ... and 7.5 kHz
MEL_BREAK_FREQUENCY_HERTZ = 700.0  # HTK mel scale: mel = 1127 ln(1 + f / 700)
MEL_HIGH_FREQUENCY_Q = 1127.0
LOG_OFFSET = 0.01  # log(mel + 0.01) avoids log(0)
EXAMPLE_WINDOW_SECONDS = 0.96  # one example = 96 frames ...
EXAMPLE_HOP_SECONDS = 0.96  # ... without overlap
EXAMPLE_FRAMES = int(round(EXAMPLE_WINDOW_SECONDS / STFT_HOP_SECONDS))  # 96
EXAMPLE_HOP_FRAMES = int(round(EXAMPLE_HOP_SECONDS / STFT_HOP_SECONDS))  # 96
RESAMPLE_FILTER = "kaiser_best"  # resampy filter of the published front end
# Shortest waveform giving one example: (96 - 1) * 160 + 400 samples = 0.975 s at 16 kHz.
MIN_SAMPLES = (EXAMPLE_FRAMES - 1) * HOP_SAMPLES + WINDOW_SAMPLES


# ---------------------------------------------------------------------------------------
# Signal processing
# ---------------------------------------------------------------------------------------
def to_float_mono(waveform: np.ndarray) -> np.ndarray:
    """int16 or float samples [S] or [S, C] -> float64 mono [S].

    int16 is divided by 32768 (-> [-1, 1)); floats are taken as they are; channels are
    averaged.
    """
    waveform = np.asarray(waveform)
    if waveform.dtype == np.int16:
        samples = waveform.astype(np.float64) / INT16_SCALE
    elif np.issubdtype(waveform.dtype, np.floating):
        samples = waveform.astype(np.float64)
    else:
        raise ValueError(f"waveform must be int16 or float, got {waveform.dtype}")
    if samples.ndim == 2:
        samples = samples.mean(axis=1)  # [S, C] -> [S]
    elif samples.ndim != 1:
        raise ValueError(f"waveform must be [samples] or [samples, channels], got {samples.shape}")
    return samples


def resample(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """float64 [S] at `sample_rate` -> float64 [S'] at 16 kHz (resampy kaiser_best)."""
    if sample_rate == SAMPLE_RATE:
        return samples
    import resampy  # only needed for other rates

    return resampy.resample(samples, sample_rate, SAMPLE_RATE, filter=RESAMPLE_FILTER)


def hertz_to_mel(frequencies_hertz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: 1127 ln(1 + f / 700)."""
    return MEL_HIGH_FREQUENCY_Q * np.log(
        1.0 + np.asarray(frequencies_hertz, dtype=np.float64) / MEL_BREAK_FREQUENCY_HERTZ
    )


@lru_cache(maxsize=1)
def mel_matrix() -> np.ndarray:
    """Triangular HTK-mel filters on the rfft bin frequencies, float64 [257, 64].

    Band m has edges (lower, centre, upper) = band_edges[m : m + 3] with band_edges
    equally spaced in mel between 125 and 7500 Hz; weight = max(0, min(rising, falling))
    of the bin's mel value. The DC bin gets weight 0.
    """
    bins_hertz = np.linspace(0.0, SAMPLE_RATE / 2.0, NUM_SPECTROGRAM_BINS)
    bins_mel = hertz_to_mel(bins_hertz)  # [257]
    edges = np.linspace(hertz_to_mel(MEL_MIN_HZ), hertz_to_mel(MEL_MAX_HZ), NUM_MEL_BINS + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]  # [64] each
    rising = (bins_mel[:, None] - lower) / (centre - lower)  # [257, 64]
    falling = (upper - bins_mel[:, None]) / (upper - centre)  # [257, 64]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    weights.setflags(write=False)
    return weights


def periodic_hann(window_length: int) -> np.ndarray:
    """Periodic Hann window: 0.5 - 0.5 cos(2 pi n / N), n = 0..N-1."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi / window_length * np.arange(window_length))


def log_mel_spectrogram(samples: np.ndarray) -> np.ndarray:
    """16 kHz float64 [S] -> log-mel float64 [F, 64], F = 1 + (S - 400) // 160 (0 if S < 400)."""
    num_frames = (
        0 if len(samples) < WINDOW_SAMPLES else 1 + (len(samples) - WINDOW_SAMPLES) // HOP_SAMPLES
    )
    if num_frames == 0:
        return np.zeros((0, NUM_MEL_BINS))
    frames = np.lib.stride_tricks.as_strided(
        samples,
        shape=(num_frames, WINDOW_SAMPLES),
        strides=(samples.strides[0] * HOP_SAMPLES, samples.strides[0]),
        writeable=False,
    )  # [F, 400]
    spectrum = np.abs(np.fft.rfft(frames * periodic_hann(WINDOW_SAMPLES), FFT_LENGTH))  # [F, 257]
    return np.log(spectrum @ mel_matrix() + LOG_OFFSET)  # [F, 64]


def log_mel_examples(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """Waveform -> VGGish log-mel examples, float32 [N, 96, 64].

    waveform: int16 (scaled by 1/32768) or float (taken as is), [samples] or
    [samples, channels] (averaged to mono); resampled to 16 kHz when `sample_rate`
    differs. N = frames // 96 with frames = 1 + (len16k - 400) // 160; a trailing partial
    example is dropped, so N can be 0 for audio shorter than 0.975 s.
    """
    samples = resample(to_float_mono(waveform), int(sample_rate))
    log_mel = log_mel_spectrogram(samples)  # [F, 64]
    n = (
        0
        if len(log_mel) < EXAMPLE_FRAMES
        else 1 + (len(log_mel) - EXAMPLE_FRAMES) // EXAMPLE_HOP_FRAMES
    )
    starts = np.arange(n) * EXAMPLE_HOP_FRAMES
    examples = (
        np.stack([log_mel[s : s + EXAMPLE_FRAMES] for s in starts])
        if n
        else np.zeros((0, EXAMPLE_FRAMES, NUM_MEL_BINS))
    )
    return examples.astype(np.float32)  # [N, 96, 64]


def clip_log_mel(examples: np.ndarray, n: int, *, pad: str = "repeat") -> np.ndarray:
    """Trim or pad log-mel examples [N, ...] to exactly n examples [n, ...].

    pad = "repeat": repeat the last example (the S4/MS3 preprocessing of the published
    code, which writes [5, 1, 96, 64] `.pkl` files); pad = "zeros": zero examples (the
    published AVSS VGGish wrapper, which pads every clip to 10).
    """
    examples = np.asarray(examples)
    if pad not in ("repeat", "zeros"):
        raise ValueError(f"pad must be 'repeat' or 'zeros', got {pad!r}")
    if len(examples) == 0:
        raise ValueError("no log-mel example to pad: the audio is shorter than 0.975 s")
    if len(examples) >= n:
        return examples[:n]
    if pad == "repeat":
        filler = np.repeat(examples[-1:], n - len(examples), axis=0)
    else:
        filler = np.zeros((n - len(examples),) + examples.shape[1:], dtype=examples.dtype)
    return np.concatenate([examples, filler], axis=0)


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------
def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a wav file as int16 (as the published code does) -> ([S] or [S, C], rate)."""
    path = Path(path)
    if not path.is_file():
        raise AVSDataError(f"{path}: audio file not found")
    try:
        waveform, rate = sf.read(str(path), dtype="int16", always_2d=False)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError
        raise AVSDataError(f"{path}: cannot read the audio ({exc})") from exc
    return waveform, int(rate)


def wav_to_log_mel(path: str | Path) -> np.ndarray:
    """Read a wav file and return its log-mel examples float32 [N, 96, 64], N >= 1."""
    waveform, rate = read_wav(path)
    examples = log_mel_examples(waveform, rate)
    if len(examples) == 0:
        seconds = len(waveform) / rate if rate else 0.0
        raise AVSDataError(
            f"{path}: audio too short ({seconds:.3f} s); one VGGish example needs 0.975 s"
        )
    return examples


def _load_storage_from_bytes(data: bytes) -> object:
    """Stand-in for torch.storage._load_from_bytes that can only rebuild plain data."""
    return torch.load(io.BytesIO(data), weights_only=True)


def _rebuild_tensor_v2(*args: object) -> torch.Tensor:
    """torch._utils._rebuild_tensor_v2, admitted only on a real storage."""
    storage = args[0] if args else None
    if not isinstance(storage, torch.storage.TypedStorage | torch.UntypedStorage):
        raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
    return torch._utils._rebuild_tensor_v2(*args)


class _TensorUnpickler(pickle.Unpickler):
    """Admits only what `pickle.dump(tensor)` needs; any other global is refused."""

    ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }

    def find_class(self, module: str, name: str) -> object:
        found = self.ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(
                f"refusing global {module}.{name}: a log-mel .pkl may only hold a tensor"
            )
        return found

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("persistent ids are not allowed in a log-mel .pkl")


def load_log_mel_pkl(path: str | Path) -> np.ndarray:
    """Read an official log-mel `.pkl` (a pickled float tensor) safely -> float32 array.

    Only tensor reconstruction is admitted (torch._utils._rebuild_tensor_v2,
    torch.storage._load_from_bytes whose inner bytes go through
    torch.load(weights_only=True), collections.OrderedDict); anything else raises
    AVSDataError without running it. Returns float32 [N, 1, 96, 64] (or the stored shape).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _TensorUnpickler(f).load()
    except FileNotFoundError as exc:
        raise AVSDataError(f"{path}: log-mel file not found") from exc
    except Exception as exc:
        raise AVSDataError(f"{path}: not a safe pickled log-mel tensor ({exc})") from exc
    if not isinstance(obj, torch.Tensor) or not obj.is_floating_point():
        raise AVSDataError(f"{path}: expected a float tensor, found {type(obj).__name__}")
    return check_finite(obj.detach().to(torch.float32).numpy(), path)


def check_finite(examples: np.ndarray, path: str | Path) -> np.ndarray:
    """`examples` unchanged; AVSDataError naming `path` if it holds NaN or inf (which would
    otherwise surface much later as non-finite logits)."""
    finite = np.isfinite(examples)
    if not finite.all():
        bad = examples[~finite]
        raise AVSDataError(
            f"{path}: the log-mel holds {bad.size} non-finite value(s) (NaN or inf, first "
            f"{bad.flat[0]}); recompute it from the wav (avsbench preprocess) or remove it"
        )
    return examples


def log_mel_pkl_bytes(examples: np.ndarray) -> bytes:
    """The official `.pkl` of log-mel examples: pickle of a float32 tensor."""
    tensor = torch.from_numpy(np.ascontiguousarray(examples, dtype=np.float32))
    return pickle.dumps(tensor)


def save_log_mel_pkl(path: str | Path, examples: np.ndarray) -> None:
    """Write log-mel examples as the official `.pkl` (atomically)."""
    data = log_mel_pkl_bytes(examples)
    atomic_write(path, lambda tmp: tmp.write_bytes(data), durable=False)


# The `.npy` cache is linked to the `.pkl` beside it by a sidecar, `<name>.npy.json`:
# {"pkl_size", "pkl_mtime_ns", "pkl_sha256"} of the `.pkl` when the `.npy` was written.
def npy_link_path(npy_path: Path) -> Path:
    """The sidecar linking `npy_path` to its `.pkl`."""
    return npy_path.with_name(npy_path.name + ".json")


def pkl_stamp(size: int, mtime_ns: int, data: bytes) -> dict:
    """What a `.npy`'s sidecar records of the `.pkl` it was computed beside."""
    return {"pkl_size": size, "pkl_mtime_ns": mtime_ns, "pkl_sha256": _sha256(data)}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_log_mel_npy(path: str | Path, examples: np.ndarray) -> None:
    """Write log-mel examples to the safe cache format (`.npy` next to the `.pkl` path
    `path`, no pickle), atomically, with its sidecar recording the `.pkl` beside it (when
    there is one) so that a later change of that `.pkl` is noticed (`load_log_mel`)."""
    pkl = Path(path).with_suffix(".pkl")
    npy = pkl.with_suffix(".npy")
    link = npy_link_path(npy)
    stamp = None
    if pkl.is_file():
        stat = pkl.stat()
        stamp = pkl_stamp(stat.st_size, stat.st_mtime_ns, pkl.read_bytes())
    atomic_save_npy(npy, np.ascontiguousarray(examples, dtype=np.float32), durable=False)
    if stamp is not None:
        atomic_write_json(link, stamp)
    else:
        link.unlink(missing_ok=True)


def npy_matches_pkl(npy_path: Path, pkl_path: Path) -> bool:
    """Whether the `.npy` cache was computed beside this very `.pkl`: its sidecar's size
    and mtime match the `.pkl` (or, the mtime changed, its sha256 still does)."""
    try:
        stamp = json.loads(npy_link_path(npy_path).read_text())
        stat = pkl_path.stat()
    except (OSError, ValueError):
        return False  # no sidecar (another writer, an older version): not linked
    if not isinstance(stamp, dict) or stamp.get("pkl_size") != stat.st_size:
        return False
    if stamp.get("pkl_mtime_ns") == stat.st_mtime_ns:
        return True
    return stamp.get("pkl_sha256") == _sha256(pkl_path.read_bytes())


_warned_stale: set[str] = set()  # .npy files already warned about (once per process)


def load_log_mel(pkl_path: str | Path) -> np.ndarray:
    """Log-mel examples of a clip, float32: the `.npy` next to `pkl_path` when there is no
    `.pkl` or the `.npy` was computed from this `.pkl` (`npy_matches_pkl`), else the
    `.pkl` (read safely; a stale `.npy` is warned about once). Raises AVSDataError when
    neither exists."""
    pkl_path = Path(pkl_path)
    npy_path = pkl_path.with_suffix(".npy")
    has_pkl = pkl_path.is_file()
    if npy_path.is_file() and (not has_pkl or npy_matches_pkl(npy_path, pkl_path)):
        try:
            examples = np.load(npy_path, allow_pickle=False).astype(np.float32, copy=False)
        except Exception as exc:
            raise AVSDataError(f"{npy_path}: cannot read the log-mel cache ({exc})") from exc
        return check_finite(examples, npy_path)
    if not has_pkl:
        raise AVSDataError(f"{pkl_path}: log-mel file not found (nor {npy_path.name})")
    if npy_link_path(npy_path).is_file() and str(npy_path) not in _warned_stale:
        _warned_stale.add(str(npy_path))
        logging.getLogger("avsbench").warning(
            "%s changed after %s was computed from it: reading the .pkl; rerun "
            "`avsbench preprocess --overwrite` (or delete the .npy) to refresh the cache",
            pkl_path,
            npy_path,
        )
    return load_log_mel_pkl(pkl_path)
