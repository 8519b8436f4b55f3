"""Training and evaluation engine: a plain loop of functions, distributed and mixed-precision
aware, with exact resume.

    train.py        train_one_epoch, Trainer.fit, main (avs_scripts/*/train.py)
    evaluate.py     forward_batch, evaluate, main (avs_scripts/*/test.py)
    options.py      command-line flags (official names) -> avsbench.config.Config
    checkpoint.py   atomic checkpoint files, RNG states
    distributed.py  torchrun / DDP helpers, samplers, metric all-reduce
    runs.py         run folders, logging
    embeddings.py   frozen VGGish with a per-clip embedding cache
"""
