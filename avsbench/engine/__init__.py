"""Training and evaluation engine: a plain loop of functions, distributed and mixed-precision
aware, with exact resume.

    step.py         the forward step (autocast, channels_last, float32 out) and the threshold
    train.py        train_one_epoch, Trainer.fit (the loop)
    evaluate.py     evaluate (metrics over a loader), the evaluation loader, SwappedAudio
    writers.py      what test.sh writes besides metrics: masks, overlays, report grids
    setup.py        what the train and test commands (avsbench.commands) assemble: datasets,
                    VGGish, checkpoints, run folders
    options.py      command-line flags (official names) -> avsbench.config.Config
    user_config.py  avs_scripts/*/config.py, where relative paths resolve, files a run needs
    checkpoint.py   writing checkpoints (atomic), RNG states; reading: avsbench.checkpoints
    distributed.py  torchrun / DDP helpers, samplers, metric all-reduce
    runs.py         run folders, logging
    embeddings.py   frozen VGGish with a per-clip embedding cache
"""
