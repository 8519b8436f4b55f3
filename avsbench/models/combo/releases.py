"""COMBO's released S4 checkpoints (the model zoo's rows; `avsbench.models.release`).

Source: README.md of yannqi/COMBO-AVS at cb8af1c (Hugging Face YannQi/COMBO-AVS-checkpoints,
S4 only) and that model card (license apache-2.0, commit 1cd65d4). The file names are
inferred from the S4 test configs (OUTPUT_DIR checkpoints/avs_s4/COMBO_*_bs8_80k) and
pred.py (it loads <OUTPUT_DIR>/model_best.pth): the repository's file list was not seen.
"""

from __future__ import annotations

from avsbench.models.release import HUGGINGFACE, PER_CLIP, ZooEntry

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
        protocol=PER_CLIP,
        host=HUGGINGFACE,
        source_url=f"https://huggingface.co/{_COMBO_REPO}/tree/{_COMBO_COMMIT}/checkpoints/avs_s4",
        license="Apache-2.0 (the Hugging Face model card)",
        repo_id=_COMBO_REPO,
        revision=_COMBO_COMMIT,
        upstream_file=path,
        note=_COMBO_NOTE,
    )


RELEASES: tuple[ZooEntry, ...] = (
    _combo("pvt_v2_b5", "pvt", "COMBO_PVTV2B5_bs8_80k", 0.847, 0.919),
    _combo("resnet50", "r50", "COMBO_R50_bs8_80k", 0.817, 0.901),
)
