"""`avsbench check-data`: scan a dataset before training, reading every file the loaders
would read and collecting every problem (docs/CHECK_DATA.md). Read-only.

The scan follows the readers of avsbench.data: the same layouts (layouts.py,
vct_copies.py), the same file rules (a mask has its frame's size, a binary mask is read as
grey >= 128, AVSS labels come from labels_semantic/ when that folder exists, else from the
palette colours of labels_rgb/, S4/MS3 audio from the log-mel or else the wav). Where the
loaders stop at the first bad file, the scan goes on and reports them all, each with its
path; `data_check_rules` holds the problem kinds, their fixes and the published counts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from avsbench.data.audio import load_log_mel, read_wav
from avsbench.data.dataset_base import as_log_mel_clip, mask_encoding_problem
from avsbench.data.extra_inputs import MASKIGE, read_extra
from avsbench.data.layouts import (
    AVSS_SUBSET_FRAMES,
    OBJECT_FRAMES,
    SPLITS,
    AVSDataError,
    AVSSLayout,
    MS3Layout,
    S4Layout,
)
from avsbench.data.palette import NUM_CLASSES, decode_color_mask, read_label2idx
from avsbench.data.semantic_object import SEMANTIC_SUBSETS
from avsbench.data.synthetic import TOY_DATA, TRUTH_FILE
from avsbench.data.vct_copies import (
    COPY_SIZE,
    AVSSCopies384,
    MS3Copies384,
    S4Copies384,
    gt_size,
)
from avsbench.data_check_csv import Clip, csv_spec, read_clips
from avsbench.data_check_rules import OBJECT_FRAME_SIZE, PUBLISHED_CLIPS, Findings
from avsbench.errors import InputError

SOURCES = ("auto", "object", "semantic", "vct384")
OBJECT_RELEASES = {"s4": ("Single-source", S4Layout), "ms3": ("Multi-sources", MS3Layout)}
COPY_LAYOUTS = {"s4": S4Copies384, "ms3": MS3Copies384}
MIN_AUDIO_SECONDS = 0.975  # one VGGish example


# ---------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------
def detect_source(root: Path, setting: str, source: str, found: Findings) -> str | None:
    """The release the scan reads ("object", "semantic", "vct384") and `found.layout` said
    in words; None (with a "layout" problem) when ROOT holds no release of `setting`."""
    synthetic = (root / TRUTH_FILE).is_file() or (root / TOY_DATA.manifest).is_file()
    found.synthetic = synthetic
    has_semantic = (root / "metadata.csv").is_file()
    words: list[str] = []
    if setting in OBJECT_RELEASES:
        folder, layout = OBJECT_RELEASES[setting]
        has_object = layout(root).meta_csv.is_file() or layout(root).data.is_dir()
        has_copies = COPY_LAYOUTS[setting](root).copies.is_dir()
        if source == "auto":
            source = "object" if has_object else "semantic" if has_semantic else ""
        if has_object:
            words.append(
                f"AVSBench-object {folder} ({layout(root).meta_csv.name}, {setting}_data/)"
            )
        if has_copies:
            words.append(f"VCT 384-px copies ({setting}_data_384/)")
        if has_semantic:
            words.append(
                f"AVSBench-semantic ({SEMANTIC_SUBSETS[setting]} rows = {setting.upper()})"
            )
        wanted = {"object": has_object, "semantic": has_semantic, "vct384": has_copies}
    else:
        if source == "auto":
            source = "semantic" if has_semantic else ""
        if has_semantic:
            words.append("AVSBench-semantic (metadata.csv, <label>/<uid>/)")
        has_copies = has_semantic and any(root.glob("*/*/processed_frames_384"))
        if has_copies:
            words.append("VCT 384-px val/test copies (processed_frames_384/)")
        wanted = {"semantic": has_semantic, "vct384": has_copies, "object": False}
    if synthetic:
        words.append("synthetic (make-toy-data)")
    found.layout = "; ".join(words) or "none found"
    if source and wanted.get(source):
        found.layout += f"; reading: {source}"
        return source
    hint = [p.name for p in sorted(root.iterdir()) if p.is_dir()][:6] if root.is_dir() else []
    found.add(
        "layout",
        root,
        f"no {setting.upper()} release{f' of source {source}' if source else ''} here "
        f"(sub-folders: {hint}); ROOT is e.g. avsbench_data/Single-source, Multi-sources or "
        "AVSBench_semantic (avsbench_data/README.md)",
    )
    return None


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------
class FileChecks:
    """The file checks of one scan, adding to `found`."""

    def __init__(
        self, setting: str, source: str, root: Path, found: Findings, maskige: bool = False
    ) -> None:
        self.setting, self.source, self.root, self.found = setting, source, root, found
        self.maskige = maskige  # also each frame's maskige (COMBO, VCT: extra_inputs.MASKIGE)

    def extra(self, layout: object, frame_path: Path, frame: Image.Image | None) -> None:
        """The frame's maskige, as the datasets read it (`read_extra`), when asked for."""
        if not self.maskige:
            return
        path = MASKIGE.path(layout, frame_path)
        self.found.files_checked += 1
        if not path.is_file():
            self.found.add("missing_maskige", path, f"missing maskige of {frame_path.name}")
        elif frame is not None:
            try:
                read_extra(MASKIGE, path, frame, frame_path)
            except AVSDataError as exc:
                self.found.add("unreadable_maskige", path, str(exc).split(": ", 1)[-1])

    def image(self, path: Path, what: str) -> Image.Image | None:
        """The decoded image, or None after a missing_/unreadable_<what> problem."""
        self.found.files_checked += 1
        if not path.is_file():
            self.found.add(f"missing_{what}", path, f"missing {what}")
            return None
        try:
            image = Image.open(path)
            image.load()  # decodes all: a truncated file fails here
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            self.found.add(f"unreadable_{what}", path, f"cannot be decoded ({exc})")
            return None
        return image

    def frame_size(self, frame: Image.Image, path: Path, expected: tuple[int, int] | None) -> None:
        if expected is not None and frame.size != expected:
            self.found.add(
                "frame_size",
                path,
                f"{_size(frame.size)}, the release's frames are {_size(expected)}",
            )

    def mask_size(
        self,
        mask: Image.Image,
        path: Path,
        frame: Image.Image | None,
        expected: tuple[int, int] | None,
    ) -> None:
        """A mask has its frame's size (the copies: their stored GT size)."""
        if expected is not None and mask.size != expected:
            self.found.add(
                "image_size",
                path,
                f"mask is {_size(mask.size)}, the copies' GT is {_size(expected)}",
            )
        elif expected is None and frame is not None and mask.size != frame.size:
            self.found.add(
                "image_size",
                path,
                f"mask is {_size(mask.size)} but its frame is {_size(frame.size)}",
            )

    def binary_mask(self, mask: Image.Image, path: Path) -> None:
        """0/255 grey (modes 1 and P are read by their own rules); see data_check_rules."""
        if mask.mode in ("1", "P"):
            return
        problem = mask_encoding_problem(mask)
        if problem is not None and "maximum" not in problem:
            self.found.add("mask_encoding", path, problem)
            return
        values = np.unique(np.asarray(mask.convert("L")))
        odd = [int(v) for v in values if v not in (0, 255)]
        if odd:
            self.found.add(
                "mask_values",
                path,
                f"values {odd[:5]}{' ...' if len(odd) > 5 else ''} besides 0 / 255",
            )

    def semantic_label(
        self, layout: AVSSLayout, label: str, uid: str, k: int, frame: Image.Image | None
    ) -> np.ndarray | None:
        """Class ids of an AVSS label as avss_class_ids reads them, or None after a problem."""
        path = layout.label_semantic(label, uid, k)
        semantic = path.parent.is_dir()
        if not semantic:
            path = layout.label_rgb(label, uid, k)
        image = self.image(path, "mask")
        if image is None:
            return None
        expected = None
        if (
            self.source == "vct384"
            and isinstance(layout, AVSSCopies384)
            and layout.split != "train"
        ):
            expected = (gt_size(layout.split),) * 2
        self.mask_size(image, path, frame, expected)
        if semantic:
            if image.mode not in ("L", "P", "I", "I;16"):
                self.found.add("mask_class_range", path, f"PIL mode {image.mode}, not class ids")
                return None
            ids = np.asarray(image).astype(np.int64)
            if ids.size and (ids.min() < 0 or ids.max() >= NUM_CLASSES):
                self.found.add(
                    "mask_class_range",
                    path,
                    f"class id {int(ids.max())} outside 0..{NUM_CLASSES - 1}",
                )
                return None
            return ids
        try:
            return decode_color_mask(np.asarray(image.convert("RGB")))
        except AVSDataError as exc:
            self.found.add("mask_class_range", path, str(exc).split(": ", 1)[-1])
            return None

    def audio(self, wav: Path, log_mel: Path | None, examples: int) -> None:
        """S4/MS3: the log-mel (.pkl or .npy) or the wav; AVSS, semantic: the wav."""
        has_wav = wav.is_file()
        has_mel = log_mel is not None and (
            log_mel.is_file() or log_mel.with_suffix(".npy").is_file()
        )
        if not has_wav and not has_mel:
            self.found.files_checked += 1
            self.found.add(
                "missing_audio",
                wav if log_mel is None else log_mel,
                "missing audio" + ("" if log_mel is None else f" (and no {wav})"),
            )
            return
        if log_mel is not None and not has_mel:
            self.found.add("missing_log_mel", log_mel, "missing log-mel (read from the wav)")
        if log_mel is not None and not has_wav:
            self.found.add("missing_wav", wav, "missing wav (the log-mel is read)")
        if has_mel:
            self.found.files_checked += 1
            try:
                as_log_mel_clip(load_log_mel(log_mel), examples, log_mel)
            except AVSDataError as exc:
                self.found.add("unreadable_audio", log_mel, str(exc).split(": ", 1)[-1])
        if has_wav:
            self.found.files_checked += 1
            try:
                samples, rate = read_wav(wav)
            except AVSDataError as exc:
                self.found.add("unreadable_audio", wav, str(exc).split(": ", 1)[-1])
                return
            seconds = len(samples) / rate if rate else 0.0
            if seconds < MIN_AUDIO_SECONDS:
                self.found.add(
                    "unreadable_audio",
                    wav,
                    f"{seconds:.3f} s of audio; one VGGish example needs {MIN_AUDIO_SECONDS} s",
                )


def _size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]} (w x h)"


def check_clip(checks: FileChecks, clip: Clip) -> None:
    """Every file of one clip, as its dataset reads it."""
    setting, source, root = checks.setting, checks.source, checks.root
    if setting == "avss" or source == "semantic":
        layout = AVSSCopies384(root, clip.split) if source == "vct384" else AVSSLayout(root)
        label, uid = clip.group, clip.clip
        n = OBJECT_FRAMES if setting != "avss" else AVSS_SUBSET_FRAMES[label]
        annotated = n
        if clip.split == "train" and label == "v1s":
            annotated = 1  # AVSS v1s train and S4 train: frame 0 only
        for k in range(n):
            path = layout.frame(label, uid, k)
            frame = checks.image(path, "frame")
            checks.extra(layout, path, frame)
            if k < annotated:
                checks.semantic_label(layout, label, uid, k, frame)
        checks.audio(layout.wav(label, uid), None, n)
        return
    copies = source == "vct384"
    layout = (COPY_LAYOUTS if copies else {"s4": S4Layout, "ms3": MS3Layout})[setting](root)
    frame_size = (COPY_SIZE, COPY_SIZE) if copies else OBJECT_FRAME_SIZE
    gt = (gt_size(clip.split),) * 2 if copies else None
    masks = 1 if (setting == "s4" and clip.split == "train") else OBJECT_FRAMES
    for i in range(1, OBJECT_FRAMES + 1):
        if setting == "s4":
            frame_path = layout.frame(clip.split, clip.group, clip.clip, i)
            mask_path = layout.mask(clip.split, clip.group, clip.clip, i)
        else:
            frame_path, mask_path = (
                layout.frame(clip.clip, i),
                layout.mask(clip.split, clip.clip, i),
            )
        frame = checks.image(frame_path, "frame")
        if frame is not None:
            checks.frame_size(frame, frame_path, frame_size)
        checks.extra(layout, frame_path, frame)
        if i <= masks:
            mask = checks.image(mask_path, "mask")
            if mask is not None:
                checks.mask_size(mask, mask_path, frame, gt)
                checks.binary_mask(mask, mask_path)
    if setting == "s4":
        args: tuple[str, ...] = (clip.split, clip.group, clip.clip)
    else:
        args = (clip.split, clip.clip)
    checks.audio(layout.wav(*args), layout.log_mel(*args), OBJECT_FRAMES)


def check_dataset(
    root: str | Path,
    setting: str,
    *,
    source: str = "auto",
    splits: tuple[str, ...] = SPLITS,
    maskige: bool = False,
    progress: bool = True,
) -> Findings:
    """Scan the dataset of `setting` at `root` -> Findings (`summary()`, `usable`); only
    the clips of `splits` have their files read; `maskige`: also each frame's maskige.
    InputError (one line) for a ROOT that is not a folder or a bad argument."""
    root = Path(root)
    if setting not in PUBLISHED_CLIPS:
        raise InputError(f"--setting {setting}: use one of {sorted(PUBLISHED_CLIPS)}")
    if source not in SOURCES:
        raise InputError(f"--source {source}: use one of {list(SOURCES)}")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; pass the dataset root (avsbench_data/README.md)")
    found = Findings(root, setting)
    chosen = detect_source(root, setting, source, found)
    if chosen is None:
        return found
    checks = FileChecks(setting, chosen, root, found, maskige)
    if setting == "avss" or chosen == "semantic":
        _check_label2idx(root, found)
    clips = read_clips(root, setting, chosen, found)
    if not (root / csv_spec(setting, chosen)[0]).is_file():
        return found
    found.counts = {split: sum(c.split == split for c in clips) for split in SPLITS}
    if chosen != "semantic" or setting == "avss":
        found.published = PUBLISHED_CLIPS[setting]
    for split, n in found.counts.items():
        published = (found.published or {}).get(split)
        if n == 0:
            found.add(
                "empty_split", root / csv_spec(setting, chosen)[0], f"no clip of split {split!r}"
            )
        elif published is not None and n != published:
            why = (
                "synthetic data: expected" if found.synthetic else "a partial or modified release?"
            )
            found.add("count", None, f"{split}: {n} clips, published {published} ({why})")
    todo = [c for c in clips if c.split in splits]
    for clip in tqdm(
        todo, desc="check-data", unit="clip", disable=None if progress else True, file=sys.stderr
    ):
        check_clip(checks, clip)
    return found


def _check_label2idx(root: Path, found: Findings) -> None:
    path = AVSSLayout(root).label2idx
    if not path.is_file():
        return  # optional: the datasets read it only when it is there
    try:
        classes = read_label2idx(path)
    except AVSDataError as exc:
        found.add("label2idx", path, str(exc).split(": ", 1)[-1])
        return
    if len(classes) != NUM_CLASSES:
        found.add("label2idx", path, f"{len(classes)} classes, expected {NUM_CLASSES}")
