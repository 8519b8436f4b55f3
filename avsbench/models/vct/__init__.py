"""VCT (Huang et al., CVPR 2025): vision-centric queries on the shared Mask2Former core.

Parts: `swin` (Swin-B and D2's names), `query_block` (audio level, vision-centric query
block, hard assignment, prototype features), `config` (`VCTArch`, the published recipes).
See docs/VCT.md.
"""
