"""Predicted masks written by any codebase, mapped to the clips and frames of a split and
read as the logits the metrics take (`avsbench evaluate`, docs/EVALUATE.md).

Naming rule (the layout `test.sh --save_pred_mask` writes; frame numbers as AVSBench's):
    S4   <category>/<video_id>/<video_id>_<i>.png|.npy   i = 1..5
    MS3  <video_id>/<video_id>_<i>.png|.npy              i = 1..5
    AVSS <uid>/<k>.png                                   k = 0-based real frame
Manifest (`--manifest FILE.csv`, columns `file,video_id,frame`; `frame` is 0-based; `file`
relative to the prediction folder): any other layout.

Contents. S4/MS3: a PNG with only 0 and 255 (or 0 and 1) is a binary mask; any other
single-channel PNG is a probability map v / 255; `.npy` holds [H, W] probabilities in
[0, 1] (or booleans). AVSS: a single-channel index or palette ('P') PNG whose pixel values
are the class ids 0..70 (AVSBench's palette order, as `avsbench.visualize.save_palette_mask`
writes), or an RGB PNG painted in AVSBench's 71 colours (as its `labels_rgb`). Size: the
metric's mask size M x M, or the ground-truth file's own size, or for AVSS 360 x 240 (the
published save size); other sizes are resized to M x M by nearest neighbour as the dataset
resizes its ground truth. Every problem raises `InputError` naming
the file and the rule.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avsbench.data.transforms import resize_square
from avsbench.errors import InputError

SUFFIXES = (".png", ".npy")
AVSS_SAVE_SIZE = (360, 240)  # (w, h) of the published AVSS predicted masks
BINARY_LOGIT = 30.0  # sigmoid(30) = 1.0 in float32, sigmoid(-30) < 1e-13: a hard mask
RULE = "see docs/EVALUATE.md, 'Naming rule' and 'Manifest'"


def frame_stem(setting: str, video_id: str, category: str, k: int) -> str:
    """The naming rule's path (no suffix) of real frame k (0-based) of a clip."""
    if setting == "s4":
        return f"{category}/{video_id}/{video_id}_{k + 1}"
    if setting == "ms3":
        return f"{video_id}/{video_id}_{k + 1}"
    return f"{video_id}/{k}"


def list_prediction_files(pred_dir: Path) -> list[str]:
    """Relative POSIX paths of every file under pred_dir (hidden files included)."""
    if not pred_dir.is_dir():
        raise InputError(f"{pred_dir}: the prediction folder does not exist or is not a folder")
    files = sorted(p.relative_to(pred_dir).as_posix() for p in pred_dir.rglob("*") if p.is_file())
    if not files:
        raise InputError(f"{pred_dir}: the prediction folder is empty ({RULE})")
    return files


def map_by_rule(pred_dir: Path, expected: dict[tuple[str, int], str]) -> dict[tuple[str, int], str]:
    """(video_id, k) -> file by the naming rule; `expected` maps (video_id, k) to its stem."""
    by_stem = {stem: key for key, stem in expected.items()}
    found: dict[tuple[str, int], str] = {}
    for name in list_prediction_files(pred_dir):
        stem, suffix = name.rsplit(".", 1) if "." in Path(name).name else (name, "")
        key = by_stem.get(stem)
        if key is None or f".{suffix.lower()}" not in SUFFIXES:
            raise InputError(
                f"{pred_dir / name}: extra file: it names no frame of the split (rule: "
                f"{next(iter(expected.values()))}.png|.npy; {RULE})"
            )
        if key in found:
            raise InputError(
                f"{pred_dir / name}: a second prediction for frame {key[1]} of {key[0]} "
                f"(also {found[key]}); keep one file per frame"
            )
        found[key] = name
    return found


def map_by_manifest(
    pred_dir: Path, manifest: Path, expected: dict[tuple[str, int], str]
) -> dict[tuple[str, int], str]:
    """(video_id, k) -> file from a CSV with columns file, video_id, frame (0-based)."""
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{manifest}: cannot read the manifest ({err})") from err
    reader = csv.DictReader(text.splitlines())
    if set(reader.fieldnames or ()) != {"file", "video_id", "frame"}:
        raise InputError(f"{manifest}: the manifest's header must be file,video_id,frame")
    found: dict[tuple[str, int], str] = {}
    for line, row in enumerate(reader, start=2):
        try:
            key = (row["video_id"], int(row["frame"]))
        except (TypeError, ValueError):
            raise InputError(f"{manifest} line {line}: frame must be an integer") from None
        if key not in expected:
            raise InputError(
                f"{manifest} line {line}: extra file {row['file']}: {key[0]} frame {key[1]} "
                "is not a real frame of the split"
            )
        if not (pred_dir / row["file"]).is_file():
            raise InputError(f"{pred_dir / row['file']}: listed in {manifest} but missing")
        if key in found:
            raise InputError(f"{manifest} line {line}: a second file for {key[0]} frame {key[1]}")
        found[key] = row["file"]
    if not found:
        raise InputError(f"{manifest}: the manifest lists no file")
    listed = set(found.values())
    for name in list_prediction_files(pred_dir):
        if name not in listed:
            raise InputError(f"{pred_dir / name}: extra file: not in the manifest {manifest}")
    return found


def check_complete(
    pred_dir: Path, found: dict[tuple[str, int], str], expected: dict[tuple[str, int], str]
) -> None:
    """Every real frame of the split has its prediction."""
    missing = [key for key in expected if key not in found]
    if missing:
        video_id, k = missing[0]
        raise InputError(
            f"{pred_dir / (expected[missing[0]] + '.png')}: missing frame ({video_id} frame "
            f"{k}, {len(missing)} frame(s) missing in all): every real frame of the split "
            f"needs one prediction ({RULE})"
        )


def _sized(array: np.ndarray, path: Path, allowed: set[tuple[int, int]], size: int) -> np.ndarray:
    """array [h, w] at one of the allowed (w, h) sizes -> [size, size] (nearest)."""
    h, w = array.shape
    if (w, h) == (size, size):
        return array
    if (w, h) not in allowed:
        sizes = ", ".join(f"{a}x{b}" for a, b in sorted(allowed | {(size, size)}))
        raise InputError(
            f"{path}: wrong size {w}x{h}: a prediction is the mask size {size}x{size} or the "
            f"ground truth's own size (allowed: {sizes})"
        )
    mode = "F" if array.dtype.kind == "f" else "I"
    image = Image.fromarray(array.astype(np.float32 if mode == "F" else np.int32), mode=mode)
    return np.asarray(resize_square(image, size, is_mask=True)).astype(array.dtype)


def read_binary(path: Path, allowed: set[tuple[int, int]], size: int) -> torch.Tensor:
    """S4/MS3 prediction -> logits float32 [size, size] (a hard mask as +-30)."""
    if path.suffix.lower() == ".npy":
        try:
            prob = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: not a readable .npy array ({err})") from err
        if prob.ndim == 3 and prob.shape[0] == 1:
            prob = prob[0]
        if prob.ndim != 2 or prob.dtype.kind not in "fbiu":
            raise InputError(f"{path}: a .npy prediction is one [H, W] map, got {prob.shape}")
        prob = prob.astype(np.float64)
        if not np.isfinite(prob).all() or prob.min() < 0 or prob.max() > 1:
            raise InputError(
                f"{path}: wrong value range: a .npy prediction holds probabilities in [0, 1]"
            )
    else:
        values = _read_png(path, semantic=False).astype(np.float64)
        hard = set(np.unique(values).tolist()) <= {0.0, 255.0} or values.max() <= 1
        prob = (values > 0).astype(np.float64) if hard else values / 255.0
    prob = _sized(prob, path, allowed, size)
    with np.errstate(divide="ignore"):
        logit = np.log(prob) - np.log1p(-prob)
    return torch.from_numpy(np.clip(logit, -BINARY_LOGIT, BINARY_LOGIT).astype(np.float32))


def read_class_ids(
    path: Path, allowed: set[tuple[int, int]], size: int, num_classes: int
) -> torch.Tensor:
    """AVSS prediction -> class ids int64 [size, size]."""
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: AVSS predictions are index, palette or colour PNGs ({RULE})")
    ids = _read_png(path, semantic=True)
    if int(ids.max()) >= num_classes:
        raise InputError(
            f"{path}: wrong class range: class id {int(ids.max())} outside 0..{num_classes - 1} "
            "(pixel values are AVSBench class ids, as palette indices)"
        )
    return torch.from_numpy(_sized(ids.astype(np.int64), path, allowed, size))


def _read_png(path: Path, *, semantic: bool) -> np.ndarray:
    """A single-channel PNG -> its pixel values [H, W]; for AVSS (`semantic`) an RGB PNG in
    AVSBench's 71 colours (as `labels_rgb`) -> its class ids (exact colour match)."""
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            values = np.asarray(image)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable image ({err})") from err
    if semantic and mode == "RGB":
        from avsbench.data.palette import decode_color_mask

        return decode_color_mask(values, path)  # AVSDataError (an InputError) names the colour
    if mode not in ("L", "P", "1", "I", "I;16") or values.ndim != 2:
        kind = "an index, palette or AVSBench-colour PNG" if semantic else "a single-channel PNG"
        raise InputError(f"{path}: an image of mode {mode}: a prediction must be {kind}")
    return values.astype(np.int64)


def semantic_logits(ids: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class ids [n, H, W] -> scores [n, K, H, W] whose argmax is ids (one-hot)."""
    return torch.nn.functional.one_hot(ids, num_classes).permute(0, 3, 1, 2).float()
