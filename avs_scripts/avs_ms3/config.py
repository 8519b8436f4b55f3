"""AVSBench-object Multi-sources (MS3): the ONLY file to edit.

Paths are relative to this folder (wherever the command is typed); paths given on the
command line are relative to where it is typed. `bash train.sh` / `bash test.sh` read
them; everything else (the published MS3 recipe) comes from
`avsbench.models.registry.preset("ms3")`, and command-line flags override it for one run
(`bash train.sh --help`). No data yet? From the repository root:
    avsbench make-toy-data --out avsbench_data      # a synthetic AVSBench, no downloads
then `bash train.sh --synthetic` here.
"""

SETTING = "ms3"

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
