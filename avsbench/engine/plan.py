"""One function plans a training run: `plan_run(setting, args, user) -> TrainingPlan`.

It decides, before anything is built, the run's config, where its weights come from (the
resume checkpoint, a --weights / --trained_s4_model_path file, the backbone file, or a
random initialisation), which VGGish it uses, and records where each came from
(`TrainingPlan.provenance`, logged and appended to the run folder's config_history.jsonl).
Every checkpoint file is read ONCE: the object read here is what `checkpoints.load`
uses (`TrainingPlan.init_object`). A resume refuses the flags that would break its exactness
(`resume_changes`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsbench import checkpoints
from avsbench import config as C
from avsbench.engine import options as O
from avsbench.engine import resume_changes, runs, setup
from avsbench.engine.distributed import DistInfo
from avsbench.engine.user_config import UserConfig, check_files

logger = logging.getLogger(runs.LOGGER_NAME)


@dataclass(frozen=True)
class TrainingPlan:
    """What a training run is made of, and where each part came from."""

    config: C.Config
    resume: checkpoints.Loaded | None  # the --resume checkpoint, loaded (model, states)
    init_path: str | None  # the file that initialises a new run's model, if any
    init_flag: str  # the flag naming it ("--weights", "--trained_s4_model_path")
    init_object: Any  # that file's content, read once (checkpoints.load(obj=...))
    vggish: checkpoints.VGGishChoice
    provenance: dict[str, Any] = field(default_factory=dict)
    resume_changes: list[str] = field(default_factory=list)  # allowed changes, as log lines


def plan_run(
    setting: str, args: argparse.Namespace, user: UserConfig, info: DistInfo
) -> TrainingPlan:
    """The run of `args` (train.sh's flags), checked: SetupError for anything wrong."""
    O.check_flags(args)
    init_path, init_flag = init_flag_of(args)
    init_object = None
    if init_path and args.resume is None:
        init_object = _read(init_path, f"{init_flag} file")
    cfg, resume, changes, config_from = _resolve_config(setting, args, user, init_object)
    O.check_config(cfg)
    setup.check_amp(cfg, info)
    setup.check_outputs([("--log_dir", cfg.train.log_dir, True)])
    if resume is not None or init_path:  # every weight comes from the checkpoint
        cfg = O.apply(cfg, {"model.backbone_weights": None})
    if getattr(args, "vggish_weights", None):  # recorded in the run's config
        cfg = O.apply(cfg, {"model.vggish_weights": args.vggish_weights})
    check_files(cfg, user)
    vggish = setup.choose_vggish(resume, cfg, args)
    if resume is not None:
        weights = {"from": "--resume", "file": str(Path(resume.report.path).resolve())}
    elif init_path:
        weights = {"from": init_flag, "file": str(Path(init_path).resolve())}
    elif cfg.model.backbone_weights:
        weights = {"from": "backbone file (random decoder)", "file": cfg.model.backbone_weights}
    else:
        weights = {"from": f"random initialisation (seed {cfg.train.seed})", "file": None}
    provenance = {
        "config": config_from,
        "flags": sorted(k for k, v in vars(args).items() if v not in (None, False)),
        "weights": weights,
        "vggish": vggish.describe(),
    }
    return TrainingPlan(cfg, resume, init_path, init_flag, init_object, vggish, provenance, changes)


def log_plan(plan: TrainingPlan) -> None:
    """The provenance and the allowed resume changes, in the run's log."""
    p = plan.provenance
    logger.info("config: %s", p["config"])
    logger.info("weights: %s%s", p["weights"]["from"],
                f" {p['weights']['file']}" if p["weights"]["file"] else "")  # fmt: skip
    v = p["vggish"]
    logger.info("VGGish: %s%s", v["source"], f" {v['weights']}" if v["weights"] else "")
    for line in plan.resume_changes:
        logger.info("changed on resume: %s", line)


def _read(path: str, what: str) -> Any:
    try:
        return checkpoints.safe_torch_load(Path(path), what)
    except checkpoints.CheckpointError as err:
        raise O.SetupError(str(err)) from err


def _resolve_config(
    setting: str, args: argparse.Namespace, user: UserConfig, init_object: Any
) -> tuple[C.Config, checkpoints.Loaded | None, list[str], str]:
    """(config, the loaded resume checkpoint or None, the allowed resume changes, where the
    config came from): config.py + flags, or, with --resume, the checkpoint's config + the
    flags given (refused where they break the resume's exactness)."""
    base = user.get_config(args.synthetic, args.method)
    source = f"{'the synthetic preset with ' if args.synthetic else ''}{user.file} + flags"
    if args.resume is None:
        init_path, init_flag = init_flag_of(args)
        if init_path and args.method is None:
            base, source = _method_of_file(base, source, init_object, init_path, init_flag,
                                           args, user)  # fmt: skip
        method = base.model.method
        flags = {
            **O.model_overrides(args, user, method),
            **O.train_overrides(args, setting, method),
        }
        return O.apply(base, flags), None, [], source

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
    stored: list[C.Config] = []

    def flags(config: C.Config) -> dict[str, Any]:  # the flags given, for the stored method
        stored.append(config)
        if args.method is not None and args.method != config.model.method:
            raise O.SetupError(
                f"--resume {path} holds a {config.model.method} model, not {args.method}: "
                "leave --method out (it is read off the checkpoint)"
            )
        method = config.model.method
        return {**O.model_overrides(args, user, method), **O.train_overrides(args, setting, method)}

    loaded = setup.load_checkpoint(
        path, "--resume checkpoint", overrides=flags, expect_setting=setting, kinds=("project",)
    )
    if "optimizer" not in loaded.raw or "rng" not in loaded.raw:
        raise O.SetupError(
            f"--resume {path}: this checkpoint has no optimizer/RNG state (a *_best.pth?); "
            "resume from checkpoints/last.pth, or use --weights to start a new run from it"
        )
    changes = resume_changes.check(stored[0], loaded.config, loaded.raw, path)
    return loaded.config, loaded, changes, f"the checkpoint {path.resolve()} + flags"


def _method_of_file(
    base: C.Config, source: str, obj: Any, path: str, flag: str, args: argparse.Namespace,
    user: UserConfig,
) -> tuple[C.Config, str]:  # fmt: skip
    """(`base`, source), or, for an official file of another method (a released AVSegFormer
    checkpoint given without --method), that method's preset with the file's architecture."""
    kind = checkpoints.detect(obj)
    detector = checkpoints.detectors().get(kind) if kind else None
    if detector is None or detector.stores_config:
        return base, source  # loading says what is wrong / a project file must fit the run
    try:
        described = detector.config(obj, base).model
    except ValueError as err:
        raise O.SetupError(f"{flag} file {path}: {err}") from err
    if described.method == base.model.method:
        return base, source
    logger.info("%s %s holds a %s model: training it with its recipe", flag, path, kind)
    new = user.get_config(args.synthetic, described.method)
    paths = {name: getattr(new.model, name) for name in checkpoints.NOT_ARCHITECTURE}
    source = f"the {described.method} preset (read off {path}) + {user.file} + flags"
    return dataclasses.replace(new, model=dataclasses.replace(described, **paths)), source


def init_flag_of(args: argparse.Namespace) -> tuple[str | None, str]:
    """(path, flag) of the checkpoint that initialises a new run, if any."""
    s4_path = getattr(args, "trained_s4_model_path", None)
    if getattr(args, "load_s4_params", None) or s4_path:
        if not s4_path:
            raise O.SetupError("--load_s4_params needs --trained_s4_model_path PATH")
        if args.weights:
            raise O.SetupError("--weights and --load_s4_params both initialise the model: give one")
        return s4_path, "--trained_s4_model_path"
    return args.weights, "--weights"
