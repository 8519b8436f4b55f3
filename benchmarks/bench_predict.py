"""`avsbench predict` on a long video: speed (video seconds per second) and peak memory.

Writes a test video like the ones users bring (default 60 s, 1280 x 720, 29.97 fps H.264
with 5.1 AAC sound at 48 kHz; a red square moving across), then predicts it with S4 models
(`--methods tpavi,avsegformer`; ResNet-50, 224 px, random weights from seed 0, the same in
every run: the speed does not depend on them; `--backbone resnet18 --decoder-channels 64`
for a lighter TPAVI that leaves the media work visible) in a fresh
subprocess per run, so that each run's peak resident memory (VmHWM, which exec resets;
ru_maxrss would carry the parent's) is its own. A run
is a variant of this checkout (`--variants`), optionally also of an older checkout
(`--baseline PATH`, a folder holding that version's `avsbench/` package), interleaved
over `--repeats` rounds (odd rounds in reverse order). Each run also reports its process
CPU seconds (all threads: what counts on a loaded machine) and a sha256 of its decoded
masks; `masks_equal_baseline` says whether every run of a variant gave the baseline's
masks bit for bit. Results: benchmarks/results/predict_<device>.json.

    python benchmarks/bench_predict.py --seconds 60 --repeats 2 --baseline /tmp/old
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent

# variant -> predict_video keyword arguments
VARIANTS = {
    "default": {},
    "no_overlay": {"write_overlay": False},
    "masks_per_second_5": {"masks_per_second": 5},
    "masks_per_second_5_no_overlay": {"masks_per_second": 5, "write_overlay": False},
    # this checkout only: decoding and the overlay in their own threads even where torch
    # keeps every core busy (the default leaves them off there)
    "threads": {"background": True},
}

CHILD = r"""
import hashlib, json, resource, sys, time, torch
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import numpy as np
from PIL import Image
from avsbench.models import registry
from avsbench import config as C
from avsbench.models.registry import build_model_for
from avsbench.models.backbones.vggish import build_vggish
from avsbench.predict import Predictor, predict_video
torch.manual_seed(0)
torch.set_num_threads(int(sys.argv[5]))
method = sys.argv[9]
changes = {"model.backbone_weights": None, "model.vggish_weights": None,
           "model.backbone": sys.argv[7]}
if method == "tpavi":
    changes["model.arch.decoder_channels"] = int(sys.argv[8])
cfg = C.override(registry.preset("s4", method), changes)
model = build_model_for(cfg).eval().to(sys.argv[6])
vggish = build_vggish(cfg.model).eval().to(sys.argv[6])
predictor = Predictor(model, vggish, cfg, torch.device(sys.argv[6]), {"weights": "random"})
kwargs = json.loads(sys.argv[4])
start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
result = predict_video(sys.argv[2], predictor, out_dir=sys.argv[3], keep_masks=False, **kwargs)
seconds = time.perf_counter() - start
used = resource.getrusage(resource.RUSAGE_SELF)
cpu_s = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime  # all threads
maxrss_mib = used.ru_maxrss / 1024
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]  # kB, this process
digest = hashlib.sha256()  # of the decoded masks, to compare versions
for png in sorted((Path(sys.argv[3]) / "masks").glob("*.png")):
    digest.update(np.asarray(Image.open(png)).tobytes())
print(json.dumps({"seconds": seconds, "cpu_s": cpu_s, "peak_mib": int(status) / 1024,
                  "maxrss_mib": maxrss_mib, "num_seconds": result.num_seconds,
                  "masks_sha256": digest.hexdigest(),
                  "package": sys.modules["avsbench"].__file__}))
"""


def make_video(path: Path, seconds: float, width: int, height: int) -> Path:
    from fractions import Fraction

    sys.path.insert(0, str(ROOT))  # the repository root: the tests' video writer
    from tests.video_fixtures import make_video as write

    return write(
        path, seconds, Fraction(30000, 1001), width, height, audio_rate=48000, layout="5.1"
    )


def run_once(
    package_root: Path, video: Path, kwargs: dict, method: str, args: argparse.Namespace
) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(package_root),
                str(video),
                str(out),
                json.dumps(kwargs),
                str(args.threads),
                args.device,
                args.backbone,
                str(args.decoder_channels),
                method,
            ],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(package_root)},
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", default="default,no_overlay", help=f"of {list(VARIANTS)}")
    parser.add_argument("--methods", default="tpavi", help="tpavi, avsegformer (S4 presets)")
    parser.add_argument("--backbone", default="resnet50", help="resnet50 (published), resnet18")
    parser.add_argument("--decoder-channels", type=int, default=256, help="TPAVI's decoder")
    parser.add_argument("--baseline", default=None, help="folder with an older avsbench/")
    parser.add_argument("--video", default=None, help="read (or first write) this video")
    parser.add_argument("--results", default=None, help="result file name (default: derived)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    runs: list[tuple[str, str, Path, dict]] = []  # (name, method, package root, kwargs)
    for method in args.methods.split(","):
        for name in args.variants.split(","):
            runs.append((f"{method}/{name}", method, ROOT, VARIANTS[name]))
            if args.baseline and "background" not in VARIANTS[name]:
                runs.append(
                    (f"{method}/baseline_{name}", method, Path(args.baseline), VARIANTS[name])
                )
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        video = Path(args.video) if args.video else Path(folder) / "long.mp4"
        if not video.is_file():
            made = time.perf_counter()
            make_video(video, args.seconds, width, height)
            print(f"test video written in {time.perf_counter() - made:.0f} s", file=sys.stderr)
        measured: dict[str, list[dict]] = {name: [] for name, _, _, _ in runs}
        loads = []
        for round_ in range(args.repeats):
            # interleaved; odd rounds run the list backwards so drifts of load hit both
            for name, method, root, kwargs in runs if round_ % 2 == 0 else runs[::-1]:
                result = run_once(root, video, kwargs, method, args)
                result["load_average_1min"] = os.getloadavg()[0]
                loads.append(result["load_average_1min"])
                measured[name].append(result)
                print(round_, name, result, file=sys.stderr)
    summary = {}
    for name, results in measured.items():
        times = [r["seconds"] for r in results]
        summary[name] = {
            "wall_s_median": statistics.median(times),
            "wall_s_min": min(times),
            "cpu_s_median": statistics.median(r["cpu_s"] for r in results),
            "video_s_per_s": args.seconds / statistics.median(times),
            "peak_mib_max": max(r["peak_mib"] for r in results),
            "masks": results[0]["num_seconds"],
            "runs": results,
        }
    for name in list(summary):  # this checkout against the baseline, same method and variant
        method, variant = name.split("/")
        base = summary.get(f"{method}/baseline_{variant}")
        if base is None or variant.startswith("baseline_"):
            continue
        new = summary[name]
        new["speedup_median"] = base["wall_s_median"] / new["wall_s_median"]
        new["speedup_min"] = base["wall_s_min"] / new["wall_s_min"]
        new["cpu_ratio_median"] = base["cpu_s_median"] / new["cpu_s_median"]
        new["peak_ratio"] = new["peak_mib_max"] / base["peak_mib_max"]
        digests = {r["masks_sha256"] for r in new["runs"] + base["runs"]}
        new["masks_equal_baseline"] = len(digests) == 1
    out = {
        "video": {
            "seconds": args.seconds,
            "size": args.size,
            "fps": "30000/1001",
            "audio": "aac 5.1",
        },
        "models": f"S4 {args.methods} {args.backbone}, 224 px (random weights, seed 0)",
        "threads": args.threads,
        "device": args.device,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": {
            "before": load_before,
            "after": os.getloadavg(),
            "per_run_1min_median": statistics.median(loads),
            "per_run_1min_range": [min(loads), max(loads)],
        },
        "baseline": args.baseline,
        "results": summary,
    }
    RESULTS.mkdir(exist_ok=True)
    suffix = f"_{int(args.seconds)}s" if args.seconds != 60 else ""
    suffix += f"_{args.backbone}" if args.backbone != "resnet50" else ""
    path = RESULTS / (args.results or f"predict_{args.device}{suffix}.json")
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(
        json.dumps({k: {m: v[m] for m in v if m != "runs"} for k, v in summary.items()}, indent=1)
    )


if __name__ == "__main__":
    main()
