"""AVSBench data: official layouts, datasets, the VGGish front end, the AVSS palette and
synthetic data (`avsbench make-toy-data`). It never imports `avsbench.media`, which reads
through it; raw-video preprocessing (`avsbench preprocess`), a command over both, is
`avsbench.preprocess`."""

from avsbench.data.audio import (
    clip_log_mel,
    load_log_mel,
    load_log_mel_pkl,
    log_mel_examples,
    read_wav,
    save_log_mel_npy,
    save_log_mel_pkl,
    wav_to_log_mel,
)
from avsbench.data.datasets import DATASETS, AVSSDataset, MS3Dataset, S4Dataset, build_dataset
from avsbench.data.extra_inputs import MASKIGE, ExtraInput
from avsbench.data.layouts import (
    S4_CATEGORIES,
    AVSDataError,
    AVSSLayout,
    MS3Layout,
    S4Layout,
    read_metadata,
)
from avsbench.data.palette import (
    CLASS_NAMES,
    NUM_CLASSES,
    PALETTE,
    decode_color_mask,
    encode_color_mask,
    read_label2idx,
)
from avsbench.data.synthetic import make_toy_data

__all__ = [
    "AVSDataError",
    "AVSSDataset",
    "AVSSLayout",
    "CLASS_NAMES",
    "DATASETS",
    "ExtraInput",
    "MASKIGE",
    "MS3Dataset",
    "MS3Layout",
    "NUM_CLASSES",
    "PALETTE",
    "S4Dataset",
    "S4Layout",
    "S4_CATEGORIES",
    "build_dataset",
    "clip_log_mel",
    "decode_color_mask",
    "encode_color_mask",
    "load_log_mel",
    "load_log_mel_pkl",
    "log_mel_examples",
    "make_toy_data",
    "read_label2idx",
    "read_metadata",
    "read_wav",
    "save_log_mel_npy",
    "save_log_mel_pkl",
    "wav_to_log_mel",
]
