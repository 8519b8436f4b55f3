"""VCT's three released checkpoints (the model zoo's rows; `avsbench.models.release`).

Source: README.md of spyflying/VCT_AVS at 9a18d2f ("Model Zoo": Hugging Face
nowherespyfly/VCT_AVS, {s4,ms3,ss}_swinb_384/model_best.pth); the code is Apache-2.0. No
size or sha256 is known here.
"""

from __future__ import annotations

from avsbench.models.release import HUGGINGFACE, PER_CLIP, VCT_COMBO_AVSS, ZooEntry

_VCT_REPO = "nowherespyfly/VCT_AVS"
_VCT_LICENSE = (
    "Apache-2.0 (the code, spyflying/VCT_AVS); the Hugging Face card's license was not seen"
)


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
        protocol=VCT_COMBO_AVSS if setting == "avss" else PER_CLIP,
        host=HUGGINGFACE,
        source_url=f"https://huggingface.co/{_VCT_REPO}/blob/main/{path}",
        license=_VCT_LICENSE,
        repo_id=_VCT_REPO,
        upstream_file=path,
        note="size not known here; the sha256 is recorded on first download",
    )


RELEASES: tuple[ZooEntry, ...] = (
    _vct("s4", "s4_swinb_384", 0.862, 0.934),
    _vct("ms3", "ms3_swinb_384", 0.676, 0.814),
    _vct("avss", "ss_swinb_384", 0.525, 0.569),
)
