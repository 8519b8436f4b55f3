"""The model zoo: every released checkpoint the project can run, one row each (docs/ZOO.md),
gathered from the method packages (`releases.py` of each, `MethodSpec.releases`).

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

from avsbench.models.registry import METHODS
from avsbench.models.release import GOOGLE_DRIVE, HOSTS, HUGGINGFACE, ZooEntry

__all__ = ["GOOGLE_DRIVE", "HOSTS", "HUGGINGFACE", "ZOO", "ZooEntry"]

ZOO: tuple[ZooEntry, ...] = tuple(row for spec in METHODS.values() for row in spec.releases)
