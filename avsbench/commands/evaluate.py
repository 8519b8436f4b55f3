"""`avsbench evaluate PRED_DIR --setting s4|ms3|avss --data_root ROOT`: score the predicted
masks of any codebase under every published protocol (docs/EVALUATE.md).

The ground truth is read by the project's dataset (the masks test.sh scores), the files are
mapped to clips and frames by the naming rule or a manifest (`avsbench.prediction_files`),
and the test batches of `--test_batch_size` clips (in the split's order) go through
`engine.evaluate.ProtocolScores`, the accumulators test.sh uses. Writes metrics.json and
metrics.md into --out, a folder the command owns (`avsbench.owned_folder`), and prints the
table test.sh prints.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from avsbench import config as C
from avsbench import prediction_files as P
from avsbench.commands.test import TABLE_SECTIONS, format_table
from avsbench.errors import InputError
from avsbench.fileio import atomic_write, atomic_write_json
from avsbench.owned_folder import OwnedFolder, Owner

OWNER = Owner(
    command="evaluate",
    manifest=".avsbench-evaluate.json",
    format="avsbench-evaluate/1",
    option="--out",
    error=InputError,
)
BATCH_SIZES = (4, 2, 1)  # AVSBench, AVSegFormer, one clip (detectron2 loaders: VCT, COMBO)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred_dir", metavar="PRED_DIR", help="folder of predicted masks")
    parser.add_argument("--setting", required=True, choices=sorted(C.SETTINGS))
    parser.add_argument("--data_root", required=True, help="the dataset root (ground truth)")
    parser.add_argument("--split", default="test", help="split to score (default test)")
    parser.add_argument(
        "--test_batch_size", type=int, default=4,
        help="clips per test batch of the official S4/MS3 protocol (4 AVSBench, 2 "
        "AVSegFormer, 1 per video); 4, 2 and 1 are also reported where they divide it",
    )  # fmt: skip
    parser.add_argument(
        "--manifest", default=None, help="CSV file,video_id,frame (0-based) mapping the files"
    )
    parser.add_argument(
        "--image_size", type=int, default=224, help="mask size M the metrics score at (224)"
    )
    parser.add_argument(
        "--eval_mask_size", type=int, default=None, help="val/test mask size if not image_size"
    )
    parser.add_argument("--num_classes", type=int, default=71, help="AVSS classes (71)")
    parser.add_argument("--out", default="evaluation", help="output folder (owned by evaluate)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier output")


def _dataset(args: argparse.Namespace) -> Any:
    from avsbench.data.datasets import build_dataset

    if args.test_batch_size < 1:
        raise InputError(f"--test_batch_size {args.test_batch_size}: must be at least 1")
    root = Path(args.data_root)
    if not root.is_dir():
        raise InputError(f"--data_root {root}: not a folder; pass the dataset root")
    return build_dataset(
        args.setting, root, args.split, image_size=args.image_size,
        eval_mask_size=args.eval_mask_size,
    )  # fmt: skip


def _clips(dataset: Any, setting: str) -> list[tuple[str, str, int]]:
    """(video_id, category, real frames) of every clip, in the split's order."""
    if setting == "s4":
        return [(name, category, 5) for name, category in dataset.rows]
    if setting == "ms3":
        return [(video_id, "", 5) for video_id in dataset.rows]
    return [(uid, label, dataset.annotated_frames(label)) for uid, label in dataset.rows]


def _gt_size(dataset: Any, setting: str, video_id: str, category: str, k: int) -> tuple[int, int]:
    """(w, h) of the ground-truth file of frame k, as released."""
    layout, split = dataset.layout, dataset.split
    if setting == "s4":
        path = layout.mask(split, category, video_id, k + 1)
    elif setting == "ms3":
        path = layout.mask(split, video_id, k + 1)
    else:
        path = layout.label_semantic(category, video_id, k)
        if not path.exists():
            path = layout.label_rgb(category, video_id, k)
    with Image.open(path) as image:
        return image.size


def score(args: argparse.Namespace) -> dict[str, Any]:
    """Map, read and score the predictions; the result dict that metrics.json holds."""
    from avsbench.engine.evaluate import ProtocolScores

    setting, pred_dir = args.setting, Path(args.pred_dir)
    semantic = C.setting_info(setting).semantic
    dataset = _dataset(args)
    clips = _clips(dataset, setting)
    expected = {
        (vid, k): P.frame_stem(setting, vid, cat, k) for vid, cat, n in clips for k in range(n)
    }
    found = (
        P.map_by_manifest(pred_dir, Path(args.manifest), expected)
        if args.manifest
        else P.map_by_rule(pred_dir, expected)
    )
    P.check_complete(pred_dir, found, expected)
    batch = args.test_batch_size
    sizes = [s for s in BATCH_SIZES if batch % s == 0]
    scores = ProtocolScores(
        setting, args.num_classes, per_subset=True, official_batch_sizes=sizes,
        loader_batch=batch, protocols=True,
    )  # fmt: skip
    start = time.perf_counter()
    for first in range(0, len(clips), batch):
        logits, masks, valid, categories = [], [], [], []
        for index in range(first, min(first + batch, len(clips))):
            sample = dataset[index]
            video_id, category, real = clips[index]
            gt = torch.as_tensor(sample["masks"])  # [T, M, M]
            size = gt.shape[-1]
            frames = []
            for k in range(gt.shape[0]):
                if k >= real:  # AVSS padding frame: scored by no protocol that skips it
                    frames.append(torch.zeros(size, size, dtype=torch.long if semantic else None))
                    continue
                path = pred_dir / found[(video_id, k)]
                allowed = {_gt_size(dataset, setting, video_id, category, k)}
                if semantic:
                    allowed.add(P.AVSS_SAVE_SIZE)
                    frames.append(P.read_class_ids(path, allowed, size, args.num_classes))
                else:
                    frames.append(P.read_binary(path, allowed, size))
            stacked = torch.stack(frames)  # [T, M, M]
            if semantic:
                stacked = P.semantic_logits(stacked, args.num_classes)  # [T, K, M, M]
            else:
                stacked = stacked.unsqueeze(1)  # [T, 1, M, M]
            logits.append(stacked)
            masks.append(gt)
            valid.append(torch.as_tensor(sample["frame_valid"]))
            categories.append(category)
        scores.update(
            torch.cat(logits), torch.cat(masks), torch.stack(valid), categories
        )  # [B*T, K, M, M], [B*T, M, M], [B, T]
    return {
        "setting": setting,
        "split": args.split,
        "predictions": str(pred_dir.resolve()),
        "manifest": str(Path(args.manifest).resolve()) if args.manifest else None,
        "test_batch_size": batch,
        "num_clips": len(clips),
        "num_files": len(found),
        "seconds": round(time.perf_counter() - start, 3),
        "metrics": scores.compute(),
    }


def markdown_table(result: dict[str, Any]) -> str:
    """The metrics as a Markdown table for a paper: protocol, metric, JSON key, value (%)."""
    metrics = result["metrics"]
    lines = [
        f"AVSBench {C.setting_info(result['setting']).title} {result['split']}, "
        f"{result['num_clips']} clips, test batch {result['test_batch_size']}",
        "",
        "| Protocol | Metric | Key | Value (%) |",
        "|---|---|---|---:|",
    ]
    for title, rows in TABLE_SECTIONS.items():
        for key, label in rows.items():
            if key in metrics:
                lines.append(f"| {title} | {label} | `{key}` | {100 * metrics[key]:.2f} |")
    if "subsets" in metrics:
        from avsbench.metrics_subsets import subset_rows

        lines += [
            "",
            "| AVSS subset | clips | frames | mIoU (%) | F (%) |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in subset_rows(metrics):
            lines.append(
                f"| {r['subset']} | {r['num_clips']} | {r['num_frames']} | "
                f"{100 * r['miou']:.2f} | {100 * r['fscore']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    folder = OwnedFolder(args.out, OWNER, overwrite=args.overwrite)  # refused before any work
    try:
        result = score(args)
        atomic_write_json(folder.path / "metrics.json", result)
        text = markdown_table(result)
        atomic_write(folder.path / "metrics.md", lambda tmp: tmp.write_text(text))
        target = folder.commit()
    except BaseException:
        folder.abort()
        raise
    header = (
        f"{args.pred_dir} scored on AVSBench {C.setting_info(args.setting).title} {args.split}: "
        f"{result['num_clips']} clips, test batch size {result['test_batch_size']}"
    )
    print(format_table(result["metrics"], header))
    print(f"metrics: {target / 'metrics.json'} and {target / 'metrics.md'}")
    return 0
