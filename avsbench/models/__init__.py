"""The AVSBench network: visual encoders, VGGish, TPAVI, decoder, assembly, official names."""

from avsbench.config import SETTINGS
from avsbench.models.audio import VGGish
from avsbench.models.avs import (
    AVSModel,
    AVSOutput,
    build_model,
    build_model_from_config,
    build_vggish,
)
from avsbench.models.decoder import Decoder, DilatedProjection, FeatureFusionBlock
from avsbench.models.official_names import (
    OfficialLoadReport,
    load_official_state_dict,
    looks_official,
    to_official_state_dict,
)
from avsbench.models.tpavi import TPAVI, TPAVI_MODES
from avsbench.models.visual import (
    PUBLISHED_BACKBONES,
    VisualEncoder,
    build_visual_encoder,
    load_backbone_weights,
)

__all__ = [
    "AVSModel",
    "AVSOutput",
    "Decoder",
    "DilatedProjection",
    "FeatureFusionBlock",
    "OfficialLoadReport",
    "PUBLISHED_BACKBONES",
    "SETTINGS",
    "TPAVI",
    "TPAVI_MODES",
    "VGGish",
    "VisualEncoder",
    "build_model",
    "build_model_from_config",
    "build_vggish",
    "build_visual_encoder",
    "load_backbone_weights",
    "load_official_state_dict",
    "looks_official",
    "to_official_state_dict",
]
