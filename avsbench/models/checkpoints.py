"""Moved: the official names are `avsbench.models.official_names`, checkpoint files are read
by `avsbench.checkpoints`. This alias keeps older imports working for now."""

from avsbench.models.official_names import (  # noqa: F401
    OfficialLoadReport,
    load_official_state_dict,
    looks_official,
    official_to_project,
    pvt_original_to_timm,
    pvt_timm_to_original,
    to_official_state_dict,
)
