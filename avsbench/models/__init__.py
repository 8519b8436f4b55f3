"""The models: one package per method (`tpavi/`, `avsegformer/`), the parts they share
(`backbones/`: visual encoders, VGGish, deformable attention, positions), the output
contract (`contract.py`), the method record (`spec.py`) and the registry of methods
(`registry.py`). Import from those modules; `avsbench` re-exports the public names."""
