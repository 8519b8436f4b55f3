"""The commands users run, one module each: `train` and `test` (also `avs_scripts/<folder>/
train.sh` / `test.sh`), `predict`, `preprocess` and `make-toy-data`. Each module exposes
`add_arguments(parser)` and `run(args) -> int` for the `avsbench` command line (`cli.py`);
`train` and `test` also `main(setting, argv, user_config)` for the scripts."""
