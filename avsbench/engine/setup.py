"""What `train.sh` and `test.sh` both assemble, written once: the command wrapper, the
process group and console log, checkpoints through `avsbench.checkpoints.load`, datasets,
the frozen VGGish, the run folder (docs/ARCHITECTURE.md, "A batch from loader to metric").

`avsbench.commands.train` and `avsbench.commands.test` are built from these parts.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from avsbench import checkpoints, stop_signals
from avsbench import config as C
from avsbench.engine import runs
from avsbench.engine.distributed import (
    DistInfo,
    broadcast_object,
    cleanup_distributed,
    init_distributed,
)
from avsbench.engine.embeddings import AudioEmbedder
from avsbench.engine.user_config import UserConfig, explain_data_error, resolve_path_flags
from avsbench.errors import InputError, SetupError, error_line
from avsbench.fileio import WriteError, output_path_problem, remove_stale_temporaries
from avsbench.models import registry

logger = logging.getLogger(runs.LOGGER_NAME)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse `argv`; path flags become absolute against the folder the user typed them in."""
    return resolve_path_flags(parser.parse_args(list(argv)))


def run_command(run: Callable[[], Any]) -> int:
    """Run a command's body; the exit status of `train.py` / `test.py`.

    SetupError: one message without a traceback (once, from rank 0), status 2; bad input met
    while running (errors.InputError, such as a dataset's AVSDataError for a broken file,
    raised here or in a DataLoader worker): its one line, from the process that met it, 2;
    a non-finite loss: logged, 1; a file that cannot be written (fileio.WriteError: disk
    full, read-only folder): one message, 1; Ctrl-C: 130, SIGTERM (or the configured
    pre-emption signal, `stop_signals`): 128 + its number, handled as Ctrl-C. Logs are
    closed and the process group is left always."""
    try:
        with stop_signals.installed():
            run()
        return 0
    except SetupError as err:
        if os.environ.get("RANK", "0") == "0":  # one message, not one per process
            print(f"\navsbench: {err}", file=sys.stderr)
        return 2
    except InputError as err:  # a worker's copy holds the worker traceback: `error_line`
        print(f"\navsbench: {error_line(err)}", file=sys.stderr)
        return 2
    except FloatingPointError as err:
        logger.error("%s", err)
        return 1
    except WriteError as err:  # disk full, read-only folder: the previous files are kept
        if os.environ.get("RANK", "0") == "0":
            print(f"\navsbench: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(stop_signals.stopped_message(), file=sys.stderr)
        return stop_signals.exit_status()
    finally:
        runs.close_logging()
        runs.release_locks()
        cleanup_distributed()


def start(args: argparse.Namespace) -> DistInfo:
    """The process group (torchrun) or the single process, and the console log."""
    try:
        info = init_distributed(args.device)
    except (RuntimeError, ValueError) as err:  # --device cuda without a GPU, a bad name
        raise SetupError(str(err).splitlines()[0]) from err
    runs.setup_logging(None, is_main=info.is_main)
    return info


def check_outputs(outputs: Sequence[tuple[str, str | os.PathLike | None, bool]]) -> None:
    """(flag, path, is a folder) of each output a command will write: SetupError naming
    the first that cannot be written, before any work (`fileio.output_path_problem`)."""
    for flag, path, folder in outputs:
        if path is None:
            continue
        problem = output_path_problem(path, folder=folder)
        if problem is not None:
            kind = "a folder" if folder else "a file path"
            raise SetupError(f"{flag} {path}: {problem}; pass {flag} {kind} you can write to")


def check_amp(cfg: C.Config, info: DistInfo) -> None:
    """Refuse fp16 autocast on the CPU: PyTorch runs it through slow fallbacks (one step
    of the small model takes minutes instead of seconds) and it brings nothing there."""
    if cfg.runtime.amp == "fp16" and info.device.type == "cpu":
        raise SetupError(
            "--amp fp16 on the CPU: half precision is emulated there (a training step takes "
            "minutes); pass --amp off (or bf16), or run on a GPU"
        )


def load_checkpoint(path: str | os.PathLike, what: str, **kwargs: Any) -> checkpoints.Loaded:
    """`avsbench.checkpoints.load` with its errors as SetupError (one message)."""
    try:
        return checkpoints.load(path, what=what, **kwargs)
    except checkpoints.CheckpointError as err:
        raise SetupError(str(err)) from err


def find_run_checkpoint(
    base: C.Config,
    log_dir: str | None,
    session: str | None,
    names: Sequence[str],
    missing: Callable[[Path, str], str],
) -> Path:
    """The newest of `names` ("{session}" filled in) in the latest run of `session` (flag,
    else the config's) under `log_dir` (flag, else the config's); else
    SetupError(missing(log folder, session))."""
    session = session or base.train.session_name
    folder = Path(log_dir or base.train.log_dir)
    found = runs.latest_file(folder, session, [n.format(session=session) for n in names])
    if found is None:
        raise SetupError(missing(folder.resolve(), session))
    return found


def build_datasets(
    cfg: C.Config, user: UserConfig, splits: Sequence[str], *, training: bool = False
) -> list[Dataset]:
    """The datasets of `splits` at cfg.data.root; a data problem says where to fix it.
    training: the train split gets cfg.data.augment (test --split train never does)."""
    from avsbench.data.datasets import build_dataset
    from avsbench.data.frame_cache import FrameCacheError
    from avsbench.data.layouts import AVSDataError

    kwargs = {
        "image_size": cfg.data.image_size,
        "eval_mask_size": cfg.data.eval_mask_size,
        "frames_per_clip": cfg.data.frames_per_clip,
        "source": cfg.data.source,
        "frame_cache": cfg.data.frame_cache,
        "strict_masks": cfg.data.strict_masks,
        "extra_inputs": registry.method_spec(cfg.model.method).extra_inputs,
        "augment": cfg.data.augment if training else "none",  # the train split only
        "augment_seed": cfg.train.seed,
    }
    try:
        return [build_dataset(cfg.model.setting, cfg.data.root, s, **kwargs) for s in splits]
    except AVSDataError as err:
        raise explain_data_error(err, cfg, user) from err
    except FrameCacheError as err:
        raise SetupError(str(err)) from err


def choose_vggish(
    loaded: checkpoints.Loaded | None, cfg: C.Config, args: argparse.Namespace
) -> checkpoints.VGGishChoice:
    """`checkpoints.choose_vggish` with the command's flags, errors as SetupError."""
    try:
        return checkpoints.choose_vggish(
            loaded, cfg, flag=getattr(args, "vggish_weights", None), synthetic=args.synthetic
        )
    except checkpoints.CheckpointError as err:
        raise SetupError(str(err)) from err


def build_embedder(
    cfg: C.Config, info: DistInfo, vggish: checkpoints.VGGishChoice
) -> AudioEmbedder:
    """The frozen VGGish `vggish` on this process's device, with the configured cache."""
    try:
        network = checkpoints.build_chosen_vggish(vggish, cfg)
    except checkpoints.CheckpointError as err:
        raise SetupError(str(err)) from err
    return AudioEmbedder(network, info.device, cfg.data.embedding_cache)


def _lock_and_clean(run_dir: runs.RunDir) -> tuple[runs.RunDir | str, list[str]]:
    """Rank 0's part of `open_run_dir(lock=True)`: (run_dir, log lines) or (the message
    that another run holds the lock, [])."""
    try:
        dead = runs.lock_run(run_dir.root)
    except runs.RunLockError as err:
        return str(err), []
    notes = [f"took over the lock of process {dead}, which no longer runs"] if dead else []
    for folder in (run_dir.root, run_dir.checkpoints):
        for path in remove_stale_temporaries(folder):
            notes.append(f"removed {path}, left by a process that no longer runs")
    return run_dir, notes


def open_run_dir(
    log_dir: str,
    session: str,
    info: DistInfo,
    *,
    log_name: str,
    subdirs: Sequence[str] = ("checkpoints", "log"),
    existing: Path | None = None,
    lock: bool = False,
) -> runs.RunDir:
    """The run folder (rank 0 makes `<log_dir>/<session>_<time>/`, or takes `existing`;
    every process gets its path) with the text log `log/<log_name>` (rank 0).

    lock (training): rank 0 takes the folder's lock (`runs.lock_run`; another live run
    in it is a SetupError on every process) and removes the temporary files that dead
    processes left in it (`fileio.remove_stale_temporaries`)."""
    run_dir: runs.RunDir | str | None = None
    try:
        if info.is_main:
            if existing is not None:
                run_dir = runs.RunDir(existing)
            else:
                run_dir = runs.create_run_dir(log_dir, session, subdirs=tuple(subdirs))
            if lock:
                run_dir, notes = _lock_and_clean(run_dir)
        run_dir = broadcast_object(run_dir, info)
        if isinstance(run_dir, str):  # the lock is held by another run
            raise SetupError(run_dir)
        assert isinstance(run_dir, runs.RunDir)
        runs.setup_logging(run_dir.log / log_name, is_main=info.is_main)
        if lock and info.is_main:
            for note in notes:
                logger.info("%s", note)
    except OSError as err:  # a read-only or missing log folder
        where = err.filename or (run_dir.root if run_dir else log_dir)
        raise SetupError(
            f"cannot write the run folder {where}: {err.strerror or err}; pass --log_dir "
            "a folder you can write to"
        ) from err
    return run_dir
