"""The Mask2Former family core shared by COMBO and VCT (spec: VCT and COMBO, "The network").

Parts: the multi-scale deformable-attention pixel decoder, the masked-attention transformer
decoder with its prediction heads (deep supervision), the semantic inference, the two
channel-weighted visual backbones (frames and maskiges), Hungarian matching with
point-sampled losses. Each method package (`avsbench.models.combo`, `avsbench.models.vct`)
adds its own audio path and queries on top.
"""
