"""AVSBench-object Multi-sources (MS3): the ONLY file to edit. Paths are relative to this folder.

`bash train.sh` / `bash test.sh` read these paths; everything else (the published recipe,
MS3) comes from `avsbench.config.ms3()`. Command-line flags override it for one run
(`python train.py --help`). No data yet? From the repository root:
    avsbench make-toy-data --out avsbench_data      # a synthetic AVSBench, no downloads
then `bash train.sh --synthetic` here.
"""

from avsbench import config as C

# Dataset root, as released: the folder holding the metadata CSV (see avsbench_data/README.md).
DATA_ROOT = "../../avsbench_data/Multi-sources"

# Pretrained visual backbones (see pretrained_backbones/README.md), by timm name; the
# `--visual_backbone resnet|pvt` flag picks one. None: random initialisation.
BACKBONE_WEIGHTS = {
    "resnet50": "../../pretrained_backbones/resnet50-19c8e357.pth",  # torchvision ImageNet
    "pvt_v2_b5": "../../pretrained_backbones/pvt_v2_b5.pth",  # original PVT naming
}

# Frozen VGGish audio encoder (torchvggish release). None: a fixed random VGGish.
VGGISH_WEIGHTS = "../../pretrained_backbones/vggish-10086976.pth"
# VGGish PCA post-processing: off in every official config (keep None to reproduce them).
VGGISH_PCA = None  # "../../pretrained_backbones/vggish_pca_params-970ea276.pth"

# Where runs go: train_logs/<session>_<YYYYmmdd-HHMMSS>/, test_logs/<session>_<time>/.
TRAIN_LOG_DIR = "./train_logs"
TEST_LOG_DIR = "./test_logs"


def get_config(synthetic: bool = False) -> C.Config:
    """The MS3 configuration with the paths above.

    synthetic=True: the small CPU configuration for the synthetic AVSBench (ResNet-18 with
    random initialisation, decoder width 64, 96-pixel frames): no pretrained files needed.
    """
    return C.with_user_paths(
        C.ms3(),
        data_root=DATA_ROOT,
        backbone_weights=BACKBONE_WEIGHTS.get("resnet50"),
        vggish_weights=VGGISH_WEIGHTS,
        vggish_pca=VGGISH_PCA,
        log_dir=TRAIN_LOG_DIR,
        synthetic_data=synthetic,
    )
