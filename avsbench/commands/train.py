"""The training command (`avs_scripts/<folder>/train.sh`): config.py + flags -> datasets,
model, VGGish, optimizer, run folder -> `train.Trainer.fit()`.

`--weights` and MS3's `--trained_s4_model_path` initialise the run's model from any
checkpoint kind, `--resume` continues a run from its project checkpoint: all three go
through `avsbench.checkpoints.load` (via `setup.load_checkpoint`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from avsbench import config as C
from avsbench.checkpoints import Loaded
from avsbench.engine import checkpoint as ckpt_io
from avsbench.engine import options as O
from avsbench.engine import runs, setup
from avsbench.engine.distributed import DistInfo, per_process_batch_size
from avsbench.engine.evaluate import build_eval_loader
from avsbench.engine.optim import MethodHooks
from avsbench.engine.train import (
    Trainer,
    build_optimizer,
    build_train_loader,
    make_scaler,
    prepare_model,
)
from avsbench.engine.user_config import UserConfig, check_files
from avsbench.fileio import atomic_write_json
from avsbench.models import registry

logger = logging.getLogger(runs.LOGGER_NAME)


def resolve_config(
    setting: str, args: argparse.Namespace, user: UserConfig
) -> tuple[C.Config, Loaded | None]:
    """The run's config: config.py + flags, or, with --resume, the checkpoint's config +
    the flags given (its architecture cannot change). Returns (config, the loaded resume
    checkpoint or None)."""
    base = user.get_config(args.synthetic, args.method)
    if args.resume is None:
        init_path, init_flag = _init_flag(args)
        if init_path and args.method is None:
            base = _method_of_file(base, init_path, init_flag, args, user)
        method = base.model.method
        flags = {
            **O.model_overrides(args, user, method),
            **O.train_overrides(args, setting, method),
        }
        return O.apply(base, flags), None

    if args.weights or getattr(args, "load_s4_params", None):
        raise O.SetupError("--resume continues a run; it cannot be combined with --weights / "
                           "--load_s4_params")  # fmt: skip
    path = Path(args.resume)
    if args.resume == "auto":
        path = setup.find_run_checkpoint(
            base, args.log_dir, args.session_name, ["last.pth", "interrupted.pth"],
            lambda folder, session: f"--resume auto: no last.pth / interrupted.pth of session "
            f"{session!r} under {folder}; pass --resume PATH or start a new run",
        )  # fmt: skip

    def flags(stored: C.Config) -> dict[str, Any]:  # the flags given, for the stored method
        if args.method is not None and args.method != stored.model.method:
            raise O.SetupError(
                f"--resume {path} holds a {stored.model.method} model, not {args.method}: "
                "leave --method out (it is read off the checkpoint)"
            )
        method = stored.model.method
        return {**O.model_overrides(args, user, method), **O.train_overrides(args, setting, method)}

    loaded = setup.load_checkpoint(
        path, "--resume checkpoint", overrides=flags, expect_setting=setting, kinds=("project",)
    )
    if "optimizer" not in loaded.raw or "rng" not in loaded.raw:
        raise O.SetupError(
            f"--resume {path}: this checkpoint has no optimizer/RNG state (a *_best.pth?); "
            "resume from checkpoints/last.pth, or use --weights to start a new run from it"
        )
    return loaded.config, loaded


def _method_of_file(
    base: C.Config, path: str, flag: str, args: argparse.Namespace, user: UserConfig
) -> C.Config:
    """`base`, or, for an official file of another method (a released AVSegFormer checkpoint
    given without --method), that method's preset with the file's architecture."""
    from avsbench import checkpoints

    try:
        obj = checkpoints.safe_torch_load(Path(path), f"{flag} file")
    except checkpoints.CheckpointError as err:
        raise O.SetupError(str(err)) from err
    kind = checkpoints.detect(obj)
    detector = checkpoints.detectors().get(kind) if kind else None
    if detector is None or detector.stores_config:
        return base  # loading says what is wrong / a project file must fit the run
    try:
        described = detector.config(obj, base).model
    except ValueError as err:
        raise O.SetupError(f"{flag} file {path}: {err}") from err
    if described.method == base.model.method:
        return base
    logger.info("%s %s holds a %s model: training it with its recipe", flag, path, kind)
    new = user.get_config(args.synthetic, described.method)
    paths = {name: getattr(new.model, name) for name in checkpoints.NOT_ARCHITECTURE}
    return dataclasses.replace(new, model=dataclasses.replace(described, **paths))


def _init_flag(args: argparse.Namespace) -> tuple[str | None, str]:
    """(path, flag) of the checkpoint that initialises a new run, if any."""
    s4_path = getattr(args, "trained_s4_model_path", None)
    if getattr(args, "load_s4_params", None) or s4_path:
        if not s4_path:
            raise O.SetupError("--load_s4_params needs --trained_s4_model_path PATH")
        if args.weights:
            raise O.SetupError("--weights and --load_s4_params both initialise the model: give one")
        return s4_path, "--trained_s4_model_path"
    return args.weights, "--weights"


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
    O.check_flags(args)
    cfg, resume = resolve_config(setting, args, user)
    O.check_config(cfg)
    setup.check_amp(cfg, info)
    setup.check_outputs([("--log_dir", cfg.train.log_dir, True)])
    init_path, init_flag = _init_flag(args)
    if resume is not None or init_path:  # every weight comes from the checkpoint
        cfg = O.apply(cfg, {"model.backbone_weights": None})
    if getattr(args, "vggish_weights", None):  # recorded in the run's config
        cfg = O.apply(cfg, {"model.vggish_weights": args.vggish_weights})
    check_files(cfg, user)
    vggish = setup.choose_vggish(resume, cfg, args)
    try:
        per_process = per_process_batch_size(
            cfg.train.train_batch_size, info.world_size, "--train_batch_size"
        )
    except ValueError as err:
        raise O.SetupError(str(err)) from err

    ckpt_io.seed_everything(cfg.train.seed)
    train_set, val_set = setup.build_datasets(cfg, user, ["train", "val"])
    train_loader, sampler = build_train_loader(
        train_set, per_process, info, seed=cfg.train.seed, num_workers=cfg.runtime.num_workers
    )
    val_loader = build_eval_loader(val_set, cfg.train.val_batch_size, info, cfg.runtime.num_workers)

    model = resume.model if resume is not None else registry.build_model_for(cfg)
    init = None
    if init_path:
        init = setup.load_checkpoint(init_path, f"{init_flag} file", base_config=cfg, into=model)
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
        atomic_write_json(
            run_dir.config_json,
            {**C.to_dict(cfg), "world_size": info.world_size, "per_process_batch": per_process},
        )
        with open(run_dir.root / "command.txt", "a") as f:
            f.write("python train.py " + shlex.join(argv) + "\n")
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(run_dir.log))
    _log_setup(cfg, info, {"train": len(train_set), "val": len(val_set)}, per_process)
    logger.info("run folder: %s", run_dir.root.resolve())
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
