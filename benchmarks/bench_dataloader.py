"""Data-loading throughput (frames/s) of the S4, MS3 and AVSS datasets on synthetic data:
today's loader (decoding the files) against the decoded-frame cache (`--frame_cache`).

For each setting, image size and number of DataLoader workers (0, 1, 2 by default) the
loaders run side by side, interleaved round by round (plain, cached, no_decode, plain,
...), so that the machine's load hits all alike. `no_decode` serves one prepared sample
over and over: the cost of the DataLoader itself (collation, the transfer from worker
processes), a ceiling no dataset can pass. Each round times `--clips` clips (batch 4,
random order with replacement, after the batches the workers had queued are drained); the
medians and best rounds are written to benchmarks/results/dataloader.json, with the load
average before and after. Frames/s counts T frames per clip (5; AVSS 10, padding
included). `ipc_profile` then times one worker with nothing to decode, float32 against
uint8 frames, and counts page faults per batch. The synthetic data is taken from `--data`
when it holds the three roots, otherwise generated in a temporary folder; the cache goes
to a temporary folder.

    python benchmarks/bench_dataloader.py [--data avsbench_data] [--workers 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from avsbench.data.datasets import build_dataset
from avsbench.data.frame_cache import open_frame_cache
from avsbench.data.synthetic import ROOT_NAMES, make_toy_data

RESULTS = Path(__file__).resolve().parent / "results" / "dataloader.json"


class NoDecode(Dataset):
    """Clip 0 of `dataset` returned over and over: what the DataLoader itself costs
    (batching, and the transfer from worker processes), the ceiling of any dataset."""

    def __init__(self, dataset) -> None:
        self.sample, self.n = dataset[0], len(dataset)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return self.sample


class Stream:
    """An endless DataLoader over `dataset` (random clips, replacement) that times rounds."""

    def __init__(self, dataset, workers: int, batch_size: int) -> None:
        sampler = RandomSampler(
            dataset, replacement=True, num_samples=10**9, generator=torch.Generator().manual_seed(0)
        )
        self.workers = workers
        self.prefetch = 2 * workers  # batches the workers keep queued (prefetch_factor 2)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)
        self.it = iter(loader)
        next(self.it)  # starts the workers
        self.frames_per_clip = int(next(self.it)["frames"].shape[1])

    def time_round(self, clips: int) -> tuple[float, float]:
        """(wall seconds, this process's CPU seconds) per clip over `clips` clips, after
        draining the queued batches."""
        for _ in range(self.prefetch):
            next(self.it)
        loaded, start, cpu = 0, time.perf_counter(), time.process_time()
        while loaded < clips:
            loaded += len(next(self.it)["video_id"])
        return (time.perf_counter() - start) / loaded, (time.process_time() - cpu) / loaded

    def close(self) -> None:
        del self.it  # shuts the workers down


def minor_faults(pid: int) -> int:
    """Minor page faults of process `pid` so far (/proc/<pid>/stat field 10)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def ipc_profile(rounds: int = 3, batches: int = 30) -> list[dict]:
    """What a DataLoader worker costs per batch on this machine, with nothing to decode:
    batches of 4 S4 clips at 224 px, as float32 (what the datasets return) and as uint8,
    0 and 1 worker, interleaved `rounds` times. Medians (and minima) per configuration."""
    configs = [(dtype, w) for dtype in (torch.float32, torch.uint8) for w in (0, 1)]
    measured: dict[tuple, list[tuple[float, float, list[int]]]] = {c: [] for c in configs}
    for _ in range(rounds):
        for dtype, workers in configs:
            dataset = [{"frames": torch.zeros((5, 3, 224, 224), dtype=dtype)}] * 10**6
            it = iter(DataLoader(dataset, batch_size=4, num_workers=workers))
            for _ in range(6):
                next(it)
            pids = [os.getpid(), *(w.pid for w in getattr(it, "_workers", []))]
            faults = [minor_faults(pid) for pid in pids]
            cpu, start = time.process_time(), time.perf_counter()
            for _ in range(batches):
                next(it)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            faults = [minor_faults(pid) - f for pid, f in zip(pids, faults)]
            measured[(dtype, workers)].append((seconds / batches, cpu / batches, faults))
            del it
    rows = []
    for (dtype, workers), runs in measured.items():
        ms = [r[0] * 1e3 for r in runs]
        rows.append(
            {
                "frames_dtype": str(dtype).removeprefix("torch."),
                "workers": workers,
                "frames_per_s_median": round(20e3 / statistics.median(ms), 1),
                "ms_per_batch_median": round(statistics.median(ms), 2),
                "ms_per_batch_min": round(min(ms), 2),
                "main_cpu_ms_per_batch": round(statistics.median(r[1] * 1e3 for r in runs), 2),
                "main_page_faults_per_batch": round(
                    statistics.median(r[2][0] for r in runs) / batches
                ),
                "worker_page_faults_per_batch": round(
                    statistics.median(sum(r[2][1:]) for r in runs) / batches
                ),
            }
        )
        print(rows[-1])
    return rows


def summary(rounds: list[tuple[float, float]], frames_per_clip: int) -> dict:
    """Rounds of (wall, CPU) seconds per clip -> frames/s: median and best round, and per
    CPU second of the main process (with 0 workers: the cost on a core of its own)."""
    wall = [w for w, _ in rounds]
    cpu = statistics.median(c for _, c in rounds)
    return {
        "frames_per_s_median": round(frames_per_clip / statistics.median(wall), 1),
        "frames_per_s_best": round(frames_per_clip / min(wall), 1),
        "clips_per_s_median": round(1 / statistics.median(wall), 1),
        "frames_per_main_cpu_s_median": round(frames_per_clip / cpu, 1) if cpu > 0 else None,
        "rounds_ms_per_clip": [round(w * 1e3, 3) for w in wall],
    }


def bench(setting: str, root: Path, size: int, workers: list[int], args, cache: Path) -> list:
    plain = build_dataset(setting, root, "train", image_size=size)
    start = time.perf_counter()
    cached = open_frame_cache(plain, cache, build_workers=0, progress=False)
    build_s = time.perf_counter() - start
    print(f"{setting} {size}px: cache built in {build_s:.1f} s ({len(plain)} clips)")
    rows = []
    for w in workers:
        streams = {
            "plain": Stream(plain, w, args.batch_size),
            "cached": Stream(cached, w, args.batch_size),
            "no_decode": Stream(NoDecode(cached), w, args.batch_size),
        }
        times: dict[str, list[tuple[float, float]]] = {kind: [] for kind in streams}
        for _ in range(args.rounds):
            for kind, stream in streams.items():
                times[kind].append(stream.time_round(args.clips))
        t = streams["plain"].frames_per_clip
        for stream in streams.values():
            stream.close()
        row = {
            "setting": setting,
            "image_size": size,
            "workers": w,
            "clips": len(plain),
            "cache_build_s": round(build_s, 2),
            **{kind: summary(seconds, t) for kind, seconds in times.items()},
        }
        row["speedup_median"] = round(
            row["cached"]["frames_per_s_median"] / row["plain"]["frames_per_s_median"], 1
        )
        print(
            f"  workers {w}: plain {row['plain']['frames_per_s_median']} frames/s, cached "
            f"{row['cached']['frames_per_s_median']} (best {row['cached']['frames_per_s_best']}), "
            f"no decoding at all {row['no_decode']['frames_per_s_median']}"
        )
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="avsbench_data", help="folder with the synthetic roots")
    parser.add_argument("--settings", default="s4,ms3,avss")
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--image-sizes", default="224")
    parser.add_argument("--clips", type=int, default=48, help="clips timed per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per loader")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--scale", type=float, default=0.3, help="size of generated data")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(1)

    settings = args.settings.split(",")
    data = Path(args.data)
    tmp = tempfile.TemporaryDirectory(prefix="avsbench_bench_")
    if not all((data / ROOT_NAMES[s]).is_dir() for s in settings):
        data = Path(tmp.name) / "data"
        print(f"generating synthetic data in {data} ...")
        make_toy_data(data, scale=args.scale, settings=tuple(settings))
    cache = Path(tmp.name) / "frame_cache"

    load_before = os.getloadavg()
    results = []
    for setting in settings:
        for size in map(int, args.image_sizes.split(",")):
            workers = list(map(int, args.workers.split(",")))
            results += bench(setting, data / ROOT_NAMES[setting], size, workers, args, cache)
    profile = ipc_profile()
    record = {
        "benchmark": f"dataloader throughput, train split, batch {args.batch_size}: decoding "
        "the files (plain) vs the decoded-frame cache (cached), interleaved rounds",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "load_average_1_5_15_before": [round(x, 2) for x in load_before],
            "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rounds": args.rounds,
        "clips_per_round": args.clips,
        "results": results,
        "ipc_profile": profile,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
