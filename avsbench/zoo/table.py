"""The model zoo: every released checkpoint the project can run, one row each (docs/ZOO.md).

A row says what the file is (method, setting, backbone: the architecture `checkpoints.load`
must build from it), what its authors published for it (the metrics.json keys of the
protocol they measured with, docs/METRICS.md), and where it comes from (host, source URL,
license, upstream file name, size and sha256 where known). Nothing here touches the
network: `avsbench.zoo.fetch` downloads, `avsbench.zoo.store` verifies and finds files.

Sources of the rows (read where this project is built; the files themselves could not be
downloaded here, so no size or sha256 is known for any of them yet):
- AVSegFormer: README.md of vvvb-github/AVSegFormer at 7083cb6 (Google Drive file links,
  mIoU / F of the published test, S4/MS3 at test batch 2). The repository has no LICENSE
  file; the Drive file names are not in the README.
- VCT: README.md of spyflying/VCT_AVS at 9a18d2f ("Model Zoo": Hugging Face
  nowherespyfly/VCT_AVS, {s4,ms3,ss}_swinb_384/model_best.pth); the code is Apache-2.0.
- COMBO: README.md of yannqi/COMBO-AVS at cb8af1c (Hugging Face YannQi/COMBO-AVS-checkpoints,
  S4 only) and that model card (license apache-2.0, commit 1cd65d4). The file names are
  inferred from the S4 test configs (OUTPUT_DIR checkpoints/avs_s4/COMBO_*_bs8_80k) and
  pred.py (it loads <OUTPUT_DIR>/model_best.pth): the repository's file list was not seen.
"""

from __future__ import annotations

from dataclasses import dataclass

HUGGINGFACE = "huggingface"
GOOGLE_DRIVE = "google_drive"
HOSTS = (HUGGINGFACE, GOOGLE_DRIVE)


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


_AVSEGFORMER_SOURCE = "https://github.com/vvvb-github/AVSegFormer/tree/7083cb6"
_AVSEGFORMER_LICENSE = "none stated (no LICENSE file in vvvb-github/AVSegFormer at 7083cb6)"
_AVSEGFORMER_NOTE = (
    "Google Drive file: name and size not published in the README; the sha256 is recorded "
    "on first download"
)
_OFFICIAL_BATCH_2 = "official AVSBench metrics at test batch 2 (AVSegFormer's test.sh)"
_OFFICIAL_AVSS = "official AVSBench metrics over all frames (AVSS; no batch dependence)"


def _avsegformer(setting: str, backbone: str, short: str, drive_id: str, miou: float,
                 fscore: float) -> ZooEntry:  # fmt: skip
    keys = ("miou", "fscore") if setting == "avss" else ("miou_test_batch_2", "fscore_test_batch_2")
    return ZooEntry(
        name=f"avsegformer-{setting}-{short}",
        method="avsegformer",
        setting=setting,
        backbone=backbone,
        published=((keys[0], miou), (keys[1], fscore)),
        protocol=_OFFICIAL_AVSS if setting == "avss" else _OFFICIAL_BATCH_2,
        host=GOOGLE_DRIVE,
        source_url=f"https://drive.google.com/file/d/{drive_id}/view?usp=drive_link",
        license=_AVSEGFORMER_LICENSE,
        note=_AVSEGFORMER_NOTE,
    )


_VCT_REPO = "nowherespyfly/VCT_AVS"
_VCT_LICENSE = (
    "Apache-2.0 (the code, spyflying/VCT_AVS); the Hugging Face card's license was not seen"
)
_PER_CLIP = "VCT/COMBO evaluator: per clip of 5 frames, averaged over clips (detectron2 test)"
_VCT_COMBO_AVSS = "VCT/COMBO AVSS evaluator: per class over the real frames, 71 classes"


def _vct(setting: str, folder: str, miou: float, fscore: float) -> ZooEntry:
    keys = (
        ("miou_vct_combo_avss", "fscore_vct_combo_avss")
        if setting == "avss"
        else ("miou_per_clip", "fscore_per_clip")
    )
    path = f"{folder}/model_best.pth"
    return ZooEntry(
        name=f"vct-{setting}-swinb",
        method="vct",
        setting=setting,
        backbone="swin_base_patch4_window12_384",
        published=((keys[0], miou), (keys[1], fscore)),
        protocol=_VCT_COMBO_AVSS if setting == "avss" else _PER_CLIP,
        host=HUGGINGFACE,
        source_url=f"https://huggingface.co/{_VCT_REPO}/blob/main/{path}",
        license=_VCT_LICENSE,
        repo_id=_VCT_REPO,
        upstream_file=path,
        note="size not known here; the sha256 is recorded on first download",
    )


_COMBO_REPO = "YannQi/COMBO-AVS-checkpoints"
_COMBO_COMMIT = "1cd65d4530ec0dbe90c0514ea553cb34d96d5b76"  # "Upload COMBO-AVS checkpoints"
_COMBO_NOTE = (
    "file name inferred from COMBO-AVS's S4 test config (OUTPUT_DIR) and pred.py, not seen "
    "in the repository's file list; size not known here"
)


def _combo(backbone: str, short: str, folder: str, miou: float, fscore: float) -> ZooEntry:
    path = f"checkpoints/avs_s4/{folder}/model_best.pth"
    return ZooEntry(
        name=f"combo-s4-{short}",
        method="combo",
        setting="s4",
        backbone=backbone,
        published=(("miou_per_clip", miou), ("fscore_per_clip", fscore)),
        protocol=_PER_CLIP,
        host=HUGGINGFACE,
        source_url=f"https://huggingface.co/{_COMBO_REPO}/tree/{_COMBO_COMMIT}/checkpoints/avs_s4",
        license="Apache-2.0 (the Hugging Face model card)",
        repo_id=_COMBO_REPO,
        revision=_COMBO_COMMIT,
        upstream_file=path,
        note=_COMBO_NOTE,
    )


ZOO: tuple[ZooEntry, ...] = (
    _avsegformer("s4", "resnet50", "r50", "1nvIfR-1XZ_BgP8ZSUDuAsGhAwDJRxgC3", 0.7638, 0.867),
    _avsegformer("s4", "pvt_v2_b5", "pvt", "1ZJ55jxoHP1ur-hLBkGcha8sjptE_shfw", 0.8306, 0.905),
    _avsegformer("ms3", "resnet50", "r50", "1MRk5gQnUtiWwYDpPfB20fO07SVLhfuIV", 0.5381, 0.656),
    _avsegformer("ms3", "pvt_v2_b5", "pvt", "1iKTxWtehAgCkNVty-4H1zVyAOaNxipHv", 0.6133, 0.730),
    _avsegformer("avss", "resnet50", "r50", "1RvL6psDsINuUwd9V1ESgE2Kixh9MXIke", 0.2658, 0.315),
    _avsegformer("avss", "pvt_v2_b5", "pvt", "1P8a2dJSUoW0EqFyxyP8B1-Rnscxnh0YY", 0.3731, 0.428),
    _vct("s4", "s4_swinb_384", 0.862, 0.934),
    _vct("ms3", "ms3_swinb_384", 0.676, 0.814),
    _vct("avss", "ss_swinb_384", 0.525, 0.569),
    _combo("pvt_v2_b5", "pvt", "COMBO_PVTV2B5_bs8_80k", 0.847, 0.919),
    _combo("resnet50", "r50", "COMBO_R50_bs8_80k", 0.817, 0.901),
)
