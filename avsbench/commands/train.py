"""The training command (`avs_scripts/<folder>/train.sh`): flags -> `plan.plan_run` (the
config, the resume checkpoint or the initial weights, the VGGish, and where each came
from) -> datasets, model, optimizer, run folder -> `train.Trainer.fit()`.

`--weights` and MS3's `--trained_s4_model_path` initialise the run's model from any
checkpoint kind, `--resume` continues a run from its project checkpoint: all three go
through `avsbench.checkpoints.load`, each file read once. The run folder keeps its first
`config.json` and one line per start in `config_history.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from avsbench import config as C
from avsbench.engine import checkpoint as ckpt_io
from avsbench.engine import options as O
from avsbench.engine import runs, setup
from avsbench.engine.distributed import DistInfo, per_process_batch_size
from avsbench.engine.evaluate import build_eval_loader
from avsbench.engine.optim import MethodHooks
from avsbench.engine.plan import TrainingPlan, log_plan, plan_run
from avsbench.engine.train import (
    Trainer,
    build_optimizer,
    build_train_loader,
    make_scaler,
    prepare_model,
)
from avsbench.engine.user_config import UserConfig
from avsbench.fileio import atomic_write_json
from avsbench.models import registry

logger = logging.getLogger(runs.LOGGER_NAME)


def record_start(root: Path, config: dict[str, Any], plan: TrainingPlan, command: str) -> None:
    """Append this start of the run (its config, where each part came from, the changes a
    resume made) to `config_history.jsonl`: one JSON line per start, never rewritten."""
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "resumed": plan.resume is not None,
        "changes": plan.resume_changes,
        "provenance": plan.provenance,
        "config": config,
    }
    with open(root / "config_history.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _log_setup(cfg: C.Config, info: DistInfo, sizes: dict[str, int], per_process: int) -> None:
    m, t = cfg.model, cfg.train
    summary = registry.method_spec(m.method).summary(m)
    logger.info(
        "AVSBench %s | %s | backbone %s | image %d | device %s x %d",
        C.setting_info(m.setting).title, summary, m.backbone, cfg.data.image_size, info.device,
        info.world_size,
    )  # fmt: skip
    unused = f" (wt_dec {t.wt_dec:g} not applied, as published)" if t.optimizer == "adam" else ""
    frozen = f" | backbone frozen for {t.freeze_backbone_epochs} epochs" * bool(
        t.freeze_backbone_epochs
    )
    logger.info(
        "train %d clips, val %d clips | batch %d (global; %d per process) | %s | "
        "%s lr %g%s%s | amp %s",
        sizes["train"], sizes["val"], t.train_batch_size, per_process,
        f"{t.max_iters} iterations" if t.max_iters else f"{t.max_epoches} epochs",
        t.optimizer, t.lr, unused, frozen, cfg.runtime.amp,
    )  # fmt: skip


def resume_command(setting: str, args: argparse.Namespace, checkpoint: Path) -> str:
    """The command that continues this run from `checkpoint` (its interrupted.pth), from
    any folder: the setting's train.sh by its absolute path, the checkpoint by its absolute
    path (so --session_name / --log_dir are not needed), and the flags a resume does not
    read off the checkpoint (--synthetic, --device)."""
    script = Path(__file__).resolve().parents[2] / "avs_scripts"
    script = script / C.SETTINGS[setting].script_folder / "train.sh"
    words = ["bash", str(script), "--resume", str(checkpoint.resolve())]
    if args.synthetic:
        words.append("--synthetic")
    if getattr(args, "device", None):
        words += ["--device", args.device]
    return shlex.join(words)


def run_training(
    setting: str, args: argparse.Namespace, user: UserConfig, argv: list[str]
) -> dict[str, Any]:
    """train.py: everything from flags to the finished run. Returns {best_miou, history,
    run_dir}."""
    info = setup.start(args)
    plan = plan_run(setting, args, user, info)
    cfg, resume, vggish = plan.config, plan.resume, plan.vggish
    try:
        per_process = per_process_batch_size(
            cfg.train.train_batch_size, info.world_size, "--train_batch_size"
        )
    except ValueError as err:
        raise O.SetupError(str(err)) from err

    ckpt_io.seed_everything(cfg.train.seed)
    train_set, val_set = setup.build_datasets(cfg, user, ["train", "val"], training=True)
    train_loader, sampler = build_train_loader(
        train_set, per_process, info, seed=cfg.train.seed, num_workers=cfg.runtime.num_workers
    )
    val_loader = build_eval_loader(val_set, cfg.train.val_batch_size, info, cfg.runtime.num_workers)

    model = resume.model if resume is not None else registry.build_model_for(cfg)
    init = None
    if plan.init_path:  # the file plan_run read: not read again
        init = setup.load_checkpoint(
            plan.init_path, f"{plan.init_flag} file", base_config=cfg, into=model,
            obj=plan.init_object,
        )  # fmt: skip
    model = prepare_model(model, cfg, info, args.sync_bn)
    embedder = setup.build_embedder(cfg, info, vggish)
    hooks = MethodHooks.of(registry.method_spec(cfg.model.method))
    optimizer = build_optimizer(model, cfg, hooks)
    scaler = make_scaler(info.device, cfg.runtime.amp)

    start_epoch, best_miou, history, position = 0, -1.0, [], None
    if resume is not None:
        state = resume.raw
        optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"]) + 1
        best_miou, history = float(state["best_miou"]), list(state["history"])
        position = state.get("position")  # interrupted.pth: inside its epoch (resume.py)

    resume_path = Path(resume.report.path) if resume is not None else None
    existing = None
    if resume_path is not None and resume_path.parent.name == "checkpoints":
        if (resume_path.parent.parent / "config.json").is_file():
            existing = resume_path.parent.parent  # resumed in place
    run_dir = setup.open_run_dir(
        cfg.train.log_dir,
        cfg.train.session_name,
        info,
        log_name="train.log",
        existing=existing,
        lock=True,
    )
    writer = None
    if info.is_main:
        config = {**C.to_dict(cfg), "world_size": info.world_size, "per_process_batch": per_process}
        if not run_dir.config_json.is_file():  # the run's first config; resumes: the history
            atomic_write_json(run_dir.config_json, config)
        command = "python train.py " + shlex.join(argv)
        record_start(run_dir.root, config, plan, command)
        with open(run_dir.root / "command.txt", "a") as f:
            f.write(command + "\n")
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(run_dir.log))
    _log_setup(cfg, info, {"train": len(train_set), "val": len(val_set)}, per_process)
    logger.info("run folder: %s", run_dir.root.resolve())
    log_plan(plan)
    if init is not None:
        logger.info("initialised from %s", init.report.summary())
    if resume is not None:
        logger.info(
            "resuming %s at epoch %d%s (best mIoU %.4f)", resume_path, start_epoch + 1,
            f", step {position['step'] + 1}" if position else "", best_miou,
        )  # fmt: skip
        ckpt_io.set_rng_state(resume.raw["rng"])  # last: everything above may draw numbers

    trainer = Trainer(
        cfg, info, model, embedder, train_loader, sampler, val_loader, optimizer, scaler,
        run_dir, start_epoch=start_epoch, best_miou=best_miou, history=history, writer=writer,
        position=position, rng_at_stop=resume.raw["rng"] if resume is not None else None,
        scheduler_state=resume.raw.get("scheduler") if resume is not None else None,
        hooks=hooks,
        resume_command=resume_command(setting, args, run_dir.checkpoints / "interrupted.pth"),
    )  # fmt: skip
    try:
        result = trainer.fit()
    finally:
        if writer is not None:
            writer.close()
    best = run_dir.best(cfg.train.session_name)
    logger.info("done: best validation mIoU %.4f -> %s", result["best_miou"], best)
    return {**result, "run_dir": run_dir.root}


def main(setting: str, argv: list[str] | None = None, user_config: ModuleType | None = None) -> int:
    """Entry point of `avs_scripts/<folder>/train.py`. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    user = UserConfig(setting, user_config)
    args = setup.parse_args(O.build_train_parser(setting), argv)
    return setup.run_command(lambda: run_training(setting, args, user, argv))


OWN_HELP = False  # `avsbench train --setting s4 --help` shows the setting's flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`avsbench train --setting S [FLAGS]`: the flags of avs_scripts/<folder>/train.sh
    (`avsbench train --setting s4 --help` lists them), with the presets' paths instead of a
    config.py."""
    parser.add_argument("--setting", required=True, choices=sorted(C.SETTINGS))


def run(args: argparse.Namespace) -> int:
    return main(args.setting, list(args.flags))
