"""Data-loading throughput (clips/s) of the S4, MS3 and AVSS datasets on synthetic data.

For each setting, image size and number of DataLoader workers (0, 1, 2 by default) this
times `--clips` clips (batch 4, after one warm-up batch) and writes
benchmarks/results/dataloader.json. The synthetic data is taken from `--data` when it
holds the three roots, otherwise it is generated in a temporary folder.

    python benchmarks/bench_dataloader.py [--data avsbench_data] [--workers 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from avsbench.data.datasets import build_dataset
from avsbench.data.synthetic import ROOT_NAMES, make_toy_data

RESULTS = Path(__file__).resolve().parent / "results" / "dataloader.json"


def time_loader(dataset, workers: int, clips: int, batch_size: int) -> dict:
    """Seconds to load `clips` clips after one warm-up batch (worker start-up excluded)."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    it = iter(loader)
    next(it)  # warm-up: starts the workers
    loaded, start = 0, time.perf_counter()
    while loaded < clips:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        loaded += len(batch["video_id"])
    seconds = time.perf_counter() - start
    return {
        "clips": loaded,
        "seconds": round(seconds, 3),
        "clips_per_s": round(loaded / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="avsbench_data", help="folder with the synthetic roots")
    parser.add_argument("--settings", default="s4,ms3,avss")
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--image-sizes", default="224,112")
    parser.add_argument("--clips", type=int, default=48, help="clips timed per configuration")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(1)

    settings = args.settings.split(",")
    data = Path(args.data)
    tmp = None
    if not all((data / ROOT_NAMES[s]).is_dir() for s in settings):
        tmp = tempfile.TemporaryDirectory(prefix="avsbench_bench_")
        data = Path(tmp.name)
        print(f"generating synthetic data in {data} ...")
        make_toy_data(data, scale=0.3, settings=tuple(settings))

    results = []
    for setting in settings:
        for size in map(int, args.image_sizes.split(",")):
            dataset = build_dataset(setting, data / ROOT_NAMES[setting], "train", image_size=size)
            for workers in map(int, args.workers.split(",")):
                row = {
                    "setting": setting,
                    "image_size": size,
                    "workers": workers,
                    **time_loader(dataset, workers, args.clips, args.batch_size),
                }
                print(row)
                results.append(row)
    record = {
        "benchmark": f"dataloader throughput, train split, batch {args.batch_size}",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
