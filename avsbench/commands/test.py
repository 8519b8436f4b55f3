"""The test command (`avs_scripts/<folder>/test.sh`): find the weights, load them through
`avsbench.checkpoints.load`, evaluate, write metrics.json (and masks, report), print a table.

Without --weights it tests `<session>_best.pth` of the latest training run. A run that
fails leaves no run folder behind (docs/RELIABILITY.md). A project
checkpoint rebuilds its own model; an official AVSBench state dict has its architecture
read off its keys. Metrics: `evaluate.evaluate`; pictures: `writers.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from avsbench import config as C
from avsbench import stop_signals
from avsbench.data.extra_inputs import MASKIGE
from avsbench.engine import options as O
from avsbench.engine import runs, setup
from avsbench.engine.distributed import all_reduce_state
from avsbench.engine.evaluate import SwappedAudio, build_eval_loader, evaluate
from avsbench.engine.step import to_channels_last
from avsbench.engine.user_config import UserConfig, check_files
from avsbench.engine.writers import PredictionWriter, write_class_chart
from avsbench.errors import SetupError
from avsbench.fileio import atomic_write_json
from avsbench.maskiges.dataset import dataset_mark
from avsbench.metrics_robust import FalsePositiveRate
from avsbench.models import registry

logger = logging.getLogger(runs.LOGGER_NAME)
_NEGATIVES = ("silence", "noise", "offscreen")  # --audio modes of AVSBench-Robust

# The console table: one section per protocol (docs/METRICS.md says which published
# tables each one belongs to); rows whose key a setting does not have are left out.
TABLE_SECTIONS = {
    "Official AVSBench protocol": {
        "miou": "mIoU (official)",
        "fscore": "F-score (official, beta^2 = 0.3)",
        "miou_test_batch_4": "mIoU (official) at test batch 4 (AVSBench)",
        "fscore_test_batch_4": "F-score (official) at test batch 4 (AVSBench)",
        "miou_test_batch_2": "mIoU (official) at test batch 2 (AVSegFormer)",
        "fscore_test_batch_2": "F-score (official) at test batch 2 (AVSegFormer)",
        "miou_test_batch_1": "mIoU (official) at test batch 1 (per video)",
        "fscore_test_batch_1": "F-score (official) at test batch 1 (per video)",
        "miou_official_nobg": "mIoU official 'noBg' (drops class 70)",
        "fscore_official_nobg": "F-score official 'noBg' (drops class 70)",
    },
    "VCT / COMBO evaluators": {
        "miou_per_clip": "mIoU per clip (VCT/COMBO)",
        "fscore_per_clip": "F-score per clip (VCT/COMBO)",
        "miou_vct_combo_avss": "mIoU, VCT/COMBO AVSS (real frames)",
        "fscore_vct_combo_avss": "F-score, VCT/COMBO AVSS (real frames)",
    },
    "Dataset-level J&F (DDESeg, CAVP, BYOAVP)": {
        "miou_dataset_ddeseg": "J: mIoU of summed I/U, classes seen (DDESeg)",
        "f1_dataset_ddeseg": "F1 of summed tp/fp/fn, classes seen (DDESeg)",
        "fscore_dataset_ddeseg": "F (beta^2 = 0.3) of summed tp/fp/fn (DDESeg)",
        "miou_dataset_cavp": "J: mIoU of summed I/U, all classes (CAVP)",
        "f1_dataset_cavp": "F1 of summed tp/fp/fn (CAVP)",
        "fscore_dataset_cavp": "F (beta^2 = 0.3) of summed tp/fp/fn (CAVP)",
        "fdr_dataset_cavp": "false discovery rate fp/(fp+tp) (CAVP; lower is better)",
    },
    "Batch-independent variants": {
        "miou_per_frame": "mIoU, mean over frames",
        "fscore_dataset_curve": "F-score, one curve over the split",
        "iou_dataset": "IoU, sum(I) / sum(U) over the split",
        "miou_no_background": "mIoU without background (class 0)",
        "fscore_no_background": "F-score without background (class 0)",
        "miou_present_classes": "mIoU over classes present",
        "fscore_present_classes": "F-score over classes present",
    },
    "AVSBench-Robust (false positives, --audio)": {
        "fpr": "FPR: foreground share, mean over batches",
        "fpr_per_frame": "FPR: foreground share, mean over frames",
    },
}


def format_table(metrics: dict[str, Any], header: str) -> str:
    """A small text table of the scalar metrics, one section per protocol (with its JSON
    key); AVSS adds one row per subset."""
    sections = [
        (title, [(label, key) for key, label in rows.items() if key in metrics])
        for title, rows in TABLE_SECTIONS.items()
    ]
    sections = [(title, rows) for title, rows in sections if rows]
    width = max(len(label) for _, rows in sections for label, _ in rows)
    keys = max(len(key) for _, rows in sections for _, key in rows)
    lines = [header, "-" * (width + keys + 12)]
    for title, rows in sections:
        lines.append(f"{title}:")
        lines += [f"  {label:<{width}}  {metrics[key]:.4f}  {key}" for label, key in rows]
    if "subsets" in metrics:
        lines += ["", format_subset_table(metrics)]
    return "\n".join(lines)


def format_subset_table(metrics: dict[str, Any]) -> str:
    """AVSS: the official mIoU and F of each subset (v1s, v1m, v2) and of the whole set,
    each subset accumulated on its own clips alone (`metrics.subset_rows`)."""
    from avsbench.metrics_subsets import subset_rows

    head = f"{'subset':<7}{'clips':>6}{'frames':>8}{'mIoU':>9}{'F':>9}"
    head += f"{'mIoU pres.':>12}{'F pres.':>9}"
    lines = [head, "-" * len(head)]
    for r in subset_rows(metrics):
        lines.append(
            f"{r['subset']:<7}{r['num_clips']:>6}{r['num_frames']:>8}{r['miou']:>9.4f}"
            f"{r['fscore']:>9.4f}{r['miou_present_classes']:>12.4f}{r['fscore_present_classes']:>9.4f}"
        )
    return "\n".join(lines)


def find_weights(args: argparse.Namespace, base: C.Config) -> Path:
    """--weights, else `<session>_best.pth` of the latest run under --train_log_dir."""
    if args.weights:
        return Path(args.weights)

    def missing(folder: Path, session: str) -> str:
        return (
            f"no trained model to test: no {session}_best.pth under "
            f"{folder}/{session}_*/checkpoints/.\n"
            f"Train first (bash train.sh{' --synthetic' if args.synthetic else ''}"
            f"{' --session_name ' + session if args.session_name else ''}), or pass "
            "--weights PATH (a project checkpoint or an official .pth)"
        )

    return setup.find_run_checkpoint(
        base, args.train_log_dir, args.session_name, ["{session}_best.pth"], missing
    )


AUDIO_HEADERS = {
    "own": "",
    "swap": ", AUDIO SWAPPED between clips",
    "silence": ", AUDIO: SILENCE (AVSBench-Robust negative)",
    "noise": ", AUDIO: NOISE (AVSBench-Robust negative)",
    "offscreen": ", AUDIO: AN OFF-SCREEN SOUND of another category (AVSBench-Robust negative)",
}


def audio_mode(args: argparse.Namespace) -> str:
    """--audio, with --swap_audio as another spelling of --audio swap."""
    if args.swap_audio and args.audio not in (None, "swap"):
        raise SetupError(
            f"--swap_audio means --audio swap and contradicts --audio {args.audio}: give one"
        )
    return "swap" if args.swap_audio else (args.audio or "own")


def with_test_audio(dataset: Any, mode: str, args: argparse.Namespace) -> Any:
    """The split as `mode` hears it: own audio, swapped, or an AVSBench-Robust negative."""
    from avsbench.data.negative_audio import NEGATIVES, NegativeAudio

    if mode == "swap":
        return SwappedAudio(dataset)
    if mode in NEGATIVES:
        return NegativeAudio(
            dataset, mode, frontend=args.negative_frontend, seed=args.negative_seed
        )
    return dataset


def _header(setting: str, split: str, clips: int, batch_size: int, audio: str) -> str:
    text = f"AVSBench {C.setting_info(setting).title} {split}: {clips} clips, " + (
        "all frames accumulated"
        if C.setting_info(setting).semantic
        else f"test batch size {batch_size} (the official mIoU and F depend on it)"
    )
    return text + AUDIO_HEADERS[audio]


def run_test(setting: str, args: argparse.Namespace, user: UserConfig) -> dict[str, Any]:
    """test.py: load, evaluate, write metrics.json (and masks / report). Returns the JSON."""
    info = setup.start(args)
    O.check_flags(args)
    audio = audio_mode(args)
    setup.check_outputs(
        [
            ("--out_json", args.out_json, False),
            ("--log_dir", args.log_dir or user.log_dir("test"), True),
        ]
    )
    base = user.get_config(args.synthetic, args.method)
    weights = find_weights(args, base)

    def flags(stored: C.Config) -> dict[str, Any]:  # the flags given, for the file's method
        method = {"model.method": args.method} if args.method else {}
        return {**method, **O.model_overrides(args, user, stored.model.method)}

    loaded = setup.load_checkpoint(
        weights, "--weights file", base_config=base, overrides=flags, expect_setting=setting
    )
    cfg, kind = loaded.config, loaded.report.kind
    O.check_config(
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, loss=C.LossConfig()))
    )
    setup.check_amp(cfg, info)
    vggish = setup.choose_vggish(loaded, cfg, args)
    cfg = C.override(cfg, {"model.vggish_weights": vggish.weights, "model.vggish_pca": vggish.pca})
    check_files(cfg, user, need_backbone=False)
    batch_size = args.test_batch_size or cfg.eval.test_batch_size
    sub_batches = [s for s in cfg.eval.official_batch_sizes if batch_size % s == 0]
    if len(sub_batches) < len(cfg.eval.official_batch_sizes) and info.is_main:
        logger.warning(
            "official metrics at batch sizes %s need a test batch they divide (it is %d): "
            "computed only at %s", list(cfg.eval.official_batch_sizes), batch_size, sub_batches,
        )  # fmt: skip
    (dataset,) = setup.build_datasets(cfg, user, [args.split])
    try:
        dataset = with_test_audio(dataset, audio, args)
    except ValueError as err:
        raise SetupError(f"--audio {audio}: {err}") from err

    session = args.session_name or cfg.train.session_name
    log_dir = args.log_dir or user.log_dir("test")
    run_dir = None
    try:
        with stop_signals.held():  # a run folder made is one removed below
            run_dir = setup.open_run_dir(
                log_dir, session, info, log_name="test.log", subdirs=("log",)
            )
        logger.info("testing %s on %s/%s", loaded.report.summary(), cfg.data.root, args.split)

        model = loaded.model.to(info.device)
        if cfg.runtime.channels_last:
            model = to_channels_last(model)
        embedder = setup.build_embedder(cfg, info, vggish)
        loader = build_eval_loader(dataset, batch_size, info, cfg.runtime.num_workers)
        writer = None
        if args.save_pred_mask or args.report:
            writer = PredictionWriter(
                setting,
                mask_dir=run_dir.root / "pred_masks" if args.save_pred_mask else None,
                overlay_dir=run_dir.root / "overlays" if args.save_pred_mask else None,
                report_dir=run_dir.root / "report" if args.report else None,
                max_videos=args.report_max_videos,
            )
        fpr = FalsePositiveRate()

        def on_batch(batch: dict[str, Any], logits: Any) -> None:
            fpr.update(logits, batch["frame_valid"])
            if writer is not None:
                writer(batch, logits)

        start = time.perf_counter()
        metrics = evaluate(
            model, embedder, loader, setting, info.device, amp=cfg.runtime.amp,
            channels_last=cfg.runtime.channels_last, info=info,
            cache_namespace=f"{setting}/{args.split}", num_classes=cfg.model.num_classes,
            on_batch=on_batch, desc=args.split, per_subset=True,
            official_batch_sizes=sub_batches, protocols=True,
        )  # fmt: skip
        fpr.load_state_tensors(all_reduce_state(fpr.state_tensors(), info))
        metrics.update(fpr.compute())
        result = {
            "setting": setting,
            "split": args.split,
            "weights": str(Path(weights).resolve()),
            "checkpoint_kind": kind,
            "vggish": vggish.describe(),
            **maskige_fields(cfg),  # COMBO, VCT: where the maskiges came from
            "test_batch_size": batch_size,
            "num_clips": len(dataset),  # type: ignore[arg-type]
            "world_size": info.world_size,
            "audio": audio,
            "swap_audio": audio == "swap",
            "negative_frontend": args.negative_frontend if audio in _NEGATIVES else None,
            "negative_seed": args.negative_seed if audio in ("noise", "offscreen") else None,
            "amp": cfg.runtime.amp,
            "seconds": round(time.perf_counter() - start, 3),
            "metrics": metrics,
            "config": C.to_dict(cfg),
        }
        if info.is_main:
            _write_outputs(result, args, run_dir, writer is not None)
    except BaseException:
        if info.is_main and run_dir is not None:  # this run's own folder: nothing is left
            runs.close_logging()
            shutil.rmtree(run_dir.root, ignore_errors=True)
        raise
    return result


def _write_outputs(
    result: dict[str, Any], args: argparse.Namespace, run_dir: runs.RunDir, pictures: bool
) -> None:
    """metrics.json, the AVSS chart (--report), the console table."""
    setting, metrics = result["setting"], result["metrics"]
    out_json = Path(args.out_json) if args.out_json else run_dir.root / "metrics.json"
    atomic_write_json(out_json, result)
    if args.report and C.setting_info(setting).semantic:
        write_class_chart(metrics, run_dir.root / "report" / "per_class_iou.png")
    header = _header(
        setting, args.split, result["num_clips"], result["test_batch_size"], result["audio"]
    )
    print(format_table(metrics, header))
    print(f"metrics: {out_json}")
    if pictures:
        print(f"pictures: {run_dir.root}")


def main(setting: str, argv: list[str] | None = None, user_config: ModuleType | None = None) -> int:
    """Entry point of `avs_scripts/<folder>/test.py`. Returns the exit status."""
    import sys

    user = UserConfig(setting, user_config)
    args = setup.parse_args(O.build_test_parser(setting), sys.argv[1:] if argv is None else argv)
    return setup.run_command(lambda: run_test(setting, args, user))


OWN_HELP = False  # `avsbench test --setting s4 --help` shows the setting's flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`avsbench test --setting S [FLAGS]`: the flags of avs_scripts/<folder>/test.sh
    (`avsbench test --setting s4 --help` lists them), with the presets' paths instead of a
    config.py."""
    parser.add_argument("--setting", required=True, choices=sorted(C.SETTINGS))


def run(args: argparse.Namespace) -> int:
    return main(args.setting, list(args.flags))


def maskige_fields(cfg: C.Config) -> dict[str, Any]:
    """{"maskiges": `dataset_mark` of cfg.data.root} for a method that reads maskiges (COMBO,
    VCT), {} otherwise: what metrics.json says of the maskiges the model was tested on."""
    if not any(x.key == MASKIGE.key for x in registry.method_spec(cfg.model.method).extra_inputs):
        return {}
    return {"maskiges": dataset_mark(cfg.data.root)}
