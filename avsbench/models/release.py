"""A released checkpoint, described: the row type of the model zoo (`avsbench.zoo`).

Each method package lists its own released files (`RELEASES` in its `releases.py`, given to
the registry as `MethodSpec.releases`); the zoo gathers them. A row says what the file is
(method, setting, backbone: the architecture `checkpoints.load` must build from it), what
its authors published for it (the metrics.json keys of the protocol they measured with,
docs/METRICS.md), and where it comes from (host, source URL, license, upstream file name,
size and sha256 where known). Nothing here touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass

HUGGINGFACE = "huggingface"
GOOGLE_DRIVE = "google_drive"
HOSTS = (HUGGINGFACE, GOOGLE_DRIVE)

# the protocols the published numbers were measured with (docs/METRICS.md)
OFFICIAL_BATCH_2 = "official AVSBench metrics at test batch 2 (AVSegFormer's test.sh)"
OFFICIAL_AVSS = "official AVSBench metrics over all frames (AVSS; no batch dependence)"
PER_CLIP = "VCT/COMBO evaluator: per clip of 5 frames, averaged over clips (detectron2 test)"
VCT_COMBO_AVSS = "VCT/COMBO AVSS evaluator: per class over the real frames, 71 classes"


@dataclass(frozen=True)
class ZooEntry:
    """One released checkpoint (a row of `ZOO`)."""

    name: str  # what `avsbench download NAME` and `--weights NAME` take
    method: str  # avsegformer | vct | combo (the registry's method names)
    setting: str  # s4 | ms3 | avss
    backbone: str  # the config's model.backbone (timm name) the file must build
    published: tuple[tuple[str, float], ...]  # (metrics.json key, published value) pairs
    protocol: str  # how those numbers were measured (docs/METRICS.md)
    host: str  # HUGGINGFACE | GOOGLE_DRIVE
    source_url: str  # the page a person opens to see the file
    license: str  # as stated upstream, or what is (not) known
    repo_id: str | None = None  # Hugging Face: owner/name
    revision: str = "main"  # Hugging Face: branch or commit
    upstream_file: str | None = None  # path in the repository (None: not known)
    size: int | None = None  # bytes (None: not known)
    sha256: str | None = None  # published checksum (None: none published)
    note: str = ""  # what is unverified about this row

    @property
    def local_name(self) -> str:
        """The file's name in the models folder (VCT's three are all model_best.pth)."""
        return f"{self.name}.pth"

    def published_text(self) -> str:
        """e.g. 'miou_per_clip 86.2 / fscore_per_clip 0.934' (mIoU in percent, as published)."""
        parts = []
        for key, value in self.published:
            shown = (
                f"{value * 100:.2f}".rstrip("0").rstrip(".")
                if key.startswith("miou")
                else f"{value:.3f}"
            )
            parts.append(f"{key} {shown}")
        return " / ".join(parts)
