"""AVSegFormer's six released checkpoints (the model zoo's rows; `avsbench.models.release`).

Source: README.md of vvvb-github/AVSegFormer at 7083cb6 (Google Drive file links, mIoU / F
of the published test, S4/MS3 at test batch 2). The repository has no LICENSE file; the
Drive file names are not in the README, and no size or sha256 is known here.
"""

from __future__ import annotations

from avsbench.models.release import GOOGLE_DRIVE, OFFICIAL_AVSS, OFFICIAL_BATCH_2, ZooEntry

_AVSEGFORMER_SOURCE = "https://github.com/vvvb-github/AVSegFormer/tree/7083cb6"
_AVSEGFORMER_LICENSE = "none stated (no LICENSE file in vvvb-github/AVSegFormer at 7083cb6)"
_AVSEGFORMER_NOTE = (
    "Google Drive file: name and size not published in the README; the sha256 is recorded "
    "on first download"
)


def _avsegformer(setting: str, backbone: str, short: str, drive_id: str, miou: float,
                 fscore: float) -> ZooEntry:  # fmt: skip
    keys = ("miou", "fscore") if setting == "avss" else ("miou_test_batch_2", "fscore_test_batch_2")
    return ZooEntry(
        name=f"avsegformer-{setting}-{short}",
        method="avsegformer",
        setting=setting,
        backbone=backbone,
        published=((keys[0], miou), (keys[1], fscore)),
        protocol=OFFICIAL_AVSS if setting == "avss" else OFFICIAL_BATCH_2,
        host=GOOGLE_DRIVE,
        source_url=f"https://drive.google.com/file/d/{drive_id}/view?usp=drive_link",
        license=_AVSEGFORMER_LICENSE,
        note=_AVSEGFORMER_NOTE,
    )


RELEASES: tuple[ZooEntry, ...] = (
    _avsegformer("s4", "resnet50", "r50", "1nvIfR-1XZ_BgP8ZSUDuAsGhAwDJRxgC3", 0.7638, 0.867),
    _avsegformer("s4", "pvt_v2_b5", "pvt", "1ZJ55jxoHP1ur-hLBkGcha8sjptE_shfw", 0.8306, 0.905),
    _avsegformer("ms3", "resnet50", "r50", "1MRk5gQnUtiWwYDpPfB20fO07SVLhfuIV", 0.5381, 0.656),
    _avsegformer("ms3", "pvt_v2_b5", "pvt", "1iKTxWtehAgCkNVty-4H1zVyAOaNxipHv", 0.6133, 0.730),
    _avsegformer("avss", "resnet50", "r50", "1RvL6psDsINuUwd9V1ESgE2Kixh9MXIke", 0.2658, 0.315),
    _avsegformer("avss", "pvt_v2_b5", "pvt", "1P8a2dJSUoW0EqFyxyP8B1-Rnscxnh0YY", 0.3731, 0.428),
)
