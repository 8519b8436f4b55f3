"""Building blocks shared by the methods: four-stage visual encoders (`visual`), the frozen
VGGish (`vggish`), multi-scale deformable attention (`deform_attn`), positional encodings
(`positions`) and the official names of the shared backbones (`official_names`)."""
