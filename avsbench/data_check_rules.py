"""What `avsbench check-data` knows: the published clip counts, the problem kinds with their
fixes, and the findings it collects (docs/CHECK_DATA.md). The scan itself is
`avsbench.data_check`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Clips per split of the public releases, and where each number is stated.
# S4 and MS3: AVSBench (Zhou et al., ECCV 2022, "Audio-Visual Segmentation", Sec. 3 and its
# statistics table; the same on the project page opennlplab.github.io/AVSBench): Single-source
# 4,932 videos split 3,452 / 740 / 740, Multi-sources 424 videos split 296 / 64 / 64; the rows
# of s4_meta_data.csv / ms3_meta_data.csv of the release.
# AVSS: AVSBench-semantic (Zhou et al., IJCV 2024, "Audio-Visual Segmentation with
# Semantics", arXiv 2301.13190), the rows of the release's metadata.csv, 8,498 / 1,304 /
# 1,554, as later papers quote them (not re-counted here: the release is sent by e-mail).
PUBLISHED_CLIPS = {
    "s4": {"train": 3452, "val": 740, "test": 740},
    "ms3": {"train": 296, "val": 64, "test": 64},
    "avss": {"train": 8498, "val": 1304, "test": 1554},
}
# S4 / MS3 read from AVSBench-semantic (--data_source semantic): its v1s / v1m rows; their
# counts are not published per split, so they are not compared.

# Frame size of the AVSBench-object release (w, h); AVSS frames vary in size.
OBJECT_FRAME_SIZE = (224, 224)

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Kind:
    severity: str  # ERROR: the dataset cannot be used as it is; WARNING: it can
    title: str
    fix: str


KINDS = {
    "layout": Kind(ERROR, "release layout", "point ROOT at the release folder of --setting"),
    "csv": Kind(ERROR, "metadata CSV row", "fix or remove the row named (its line number)"),
    "label2idx": Kind(ERROR, "label2idx.json", "restore label2idx.json from the release"),
    "empty_split": Kind(ERROR, "split without clips", "the CSV needs rows of train, val and test"),
    "split_overlap": Kind(
        WARNING,
        "clip listed in two splits",
        "a clip tested on may have been trained on: check the CSV against the release",
    ),
    "count": Kind(
        WARNING,
        "clip count differs from the published one",
        "a partial download or a subset: compare with the release; usable as it is",
    ),
    "missing_frame": Kind(ERROR, "missing frame", "copy the frame from the release"),
    "unreadable_frame": Kind(
        ERROR, "unreadable frame (truncated or not an image)", "copy the frame again"
    ),
    "missing_mask": Kind(ERROR, "missing mask", "copy the mask from the release"),
    "unreadable_mask": Kind(ERROR, "unreadable mask", "copy the mask again"),
    "mask_values": Kind(
        ERROR,
        "binary mask with values other than 0 and 255",
        "re-encode as 0/255 grey PNG (the loaders threshold grey at 128: 0/1 reads as empty)",
    ),
    "mask_encoding": Kind(
        WARNING,
        "binary mask in another encoding (colour, alpha, palette)",
        "read as the loaders read it; re-encode as 0/255 grey to be sure",
    ),
    "mask_class_range": Kind(
        ERROR,
        "AVSS label outside the 71 classes or the palette",
        "regenerate the label from the release (class ids 0..70, palette colours only)",
    ),
    "image_size": Kind(
        ERROR,
        "mask not the size of its frame (or of the copies' GT)",
        "copy the pair again; masks have their frame's size",
    ),
    "frame_size": Kind(
        WARNING,
        "frame not of the release's size",
        "frames are resized when read; check that the frames are the release's",
    ),
    "missing_maskige": Kind(
        ERROR,
        "missing maskige (--maskige: COMBO, VCT)",
        "make the maskiges (avsbench_data/README.md, 'maskiges') or copy pre_SAM_mask/",
    ),
    "unreadable_maskige": Kind(
        ERROR, "maskige unreadable or not of its frame's size", "make or copy it again"
    ),
    "missing_audio": Kind(
        ERROR,
        "no audio (neither wav nor log-mel)",
        "copy audio_wav/ (and audio_log_mel/) from the release, or run avsbench preprocess",
    ),
    "missing_wav": Kind(
        WARNING, "missing wav (the log-mel is there)", "copy the wav: audio modes need it"
    ),
    "missing_log_mel": Kind(
        WARNING,
        "missing log-mel (the wav is there)",
        "computed from the wav when read (slower); avsbench preprocess writes it",
    ),
    "unreadable_audio": Kind(
        ERROR, "unreadable or too short wav / log-mel", "copy it again or recompute it"
    ),
}


@dataclass(frozen=True)
class Problem:
    kind: str  # a key of KINDS
    path: Path | None
    detail: str

    @property
    def severity(self) -> str:
        return KINDS[self.kind].severity


@dataclass
class Findings:
    """What a scan found: the layout, clip counts and the problems."""

    root: Path
    setting: str
    layout: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    published: dict[str, int] | None = None
    synthetic: bool = False
    problems: list[Problem] = field(default_factory=list)
    files_checked: int = 0

    def add(self, kind: str, path: Path | None, detail: str) -> None:
        if kind not in KINDS:
            raise KeyError(kind)
        self.problems.append(Problem(kind, path, detail))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def usable(self) -> bool:
        return not self.errors

    def summary(self, examples: int = 3) -> str:
        """The report a person acts on: layout, counts, per problem kind the count, the
        first examples and the fix, then the verdict."""
        lines = [f"check-data {self.root} (setting {self.setting})", f"layout: {self.layout}"]
        if self.counts:
            parts = []
            for split, n in self.counts.items():
                published = (self.published or {}).get(split)
                parts.append(f"{split} {n}" + (f" (published {published})" if published else ""))
            lines.append("clips: " + ", ".join(parts))
        lines.append(f"files checked: {self.files_checked}")
        by_kind = Counter(p.kind for p in self.problems)
        order = sorted(by_kind, key=lambda k: (KINDS[k].severity != ERROR, list(KINDS).index(k)))
        if order:
            lines.append("problems:")
        for kind in order:
            info = KINDS[kind]
            lines.append(f"  {info.severity.upper()} {kind}: {by_kind[kind]} x {info.title}")
            shown = [p for p in self.problems if p.kind == kind][:examples]
            for p in shown:
                lines.append(f"    {p.path if p.path is not None else '-'}: {p.detail}")
            if by_kind[kind] > len(shown):
                lines.append(f"    ... and {by_kind[kind] - len(shown)} more")
            lines.append(f"    fix: {info.fix}")
        errors, warnings = len(self.errors), len(self.problems) - len(self.errors)
        if errors:
            kinds = sorted({p.kind for p in self.errors})
            lines.append(
                f"NOT USABLE: {errors} error(s) ({', '.join(kinds)}), {warnings} warning(s); "
                "fix the errors above and run check-data again"
            )
        else:
            lines.append(f"USABLE: no error, {warnings} warning(s)")
        return "\n".join(lines)
