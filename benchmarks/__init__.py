"""The benchmarks, a package so that the tests import them by name (`from benchmarks import
bench_avsegformer_model`); each file still runs as a script from the repository root."""
