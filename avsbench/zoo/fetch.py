"""`avsbench download NAME`: fetch a zoo file, verify it, put it where `--weights NAME` finds it.

Hugging Face rows go through huggingface_hub (`get_hf_file_metadata` and `http_get`; its
endpoint: the `endpoint` argument, else $HF_ENDPOINT, else huggingface.co), Google Drive
rows through `gdown` (it handles Drive's confirmation page). Both write into
`<models folder>/.partial/<name>/` and resume from what is there (HTTP Range), so an
interrupted download (Ctrl-C, a dropped connection, a killed process) continues where it
stopped. The finished file is verified (`store.verify_file`) and only then renamed to
`<models folder>/<name>.pth` (one rename: a file at that path is always complete and
verified); its sha256 is recorded. A file that fails verification is moved to
`rejected/` with a message saying why and where it is; nothing the user owns is deleted.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from avsbench.zoo import store
from avsbench.zoo.store import ZooError
from avsbench.zoo.table import GOOGLE_DRIVE, HUGGINGFACE, ZooEntry


def _print(message: str) -> None:
    print(message, file=sys.stderr)


def download(
    name: str,
    models_dir: str | os.PathLike | None = None,
    *,
    table: tuple[ZooEntry, ...] | None = None,
    endpoint: str | None = None,
    refresh: bool = False,
    from_file: str | os.PathLike | None = None,
    quiet: bool = False,
    log: Callable[[str], None] = _print,
) -> Path:
    """Fetch (or adopt `from_file`), verify and record the zoo file `name`; returns its
    path in the models folder. ZooError (one line) when it cannot be fetched or verified.

    refresh: accept a sha256 other than the one recorded at the first download (the
        upstream file changed); without it such a file is refused.
    from_file: a file downloaded by hand (e.g. from a Google Drive page); it is copied,
        never moved or changed."""
    entry = store.by_name(name, table)
    folder = store.models_dir_of(models_dir)
    try:
        (folder / store.PARTIAL_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ZooError(f"cannot create the models folder {folder} ({err}): pass --models_dir "
                       f"DIR or set {store.ENV_VAR}") from err  # fmt: skip
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder / store.PARTIAL_DIR / f"{entry.name}.lock"))
    try:
        lock.acquire(timeout=1)
    except Timeout as err:
        raise ZooError(
            f"another avsbench download of {entry.name} into {folder} is running"
        ) from err
    except OSError as err:
        raise ZooError(f"cannot write into the models folder {folder} ({err})") from err
    try:
        return _download_locked(entry, folder, endpoint, refresh, from_file, quiet, log)
    except OSError as err:  # a full disk, a read-only folder: what is there stays
        raise ZooError(
            f"{entry.name}: {err}; nothing in {folder} was removed, `avsbench download "
            f"{entry.name}` continues once it can write there"
        ) from err
    finally:
        lock.release()


def _download_locked(entry: ZooEntry, folder: Path, endpoint: str | None, refresh: bool,
                     from_file: str | os.PathLike | None, quiet: bool,
                     log: Callable[[str], None]) -> Path:  # fmt: skip
    record = store.read_record(folder).get(entry.name)
    final = folder / entry.local_name
    state = store.local_state(entry, folder, rehash=True)
    if state.status == "verified" and from_file is None:
        log(f"{entry.name}: {final} is present, sha256 as recorded ({record['sha256']})")
        return final
    if state.status == "changed":
        aside = _set_aside(final, folder, entry)
        log(f"warning: {final} changed since it was verified; moved to {aside}")
    elif state.status == "unrecorded" and from_file is None:
        log(f"{entry.name}: verifying {final}, found in the models folder")
        try:
            return _install(entry, final, folder, record, refresh, log)
        except ZooError as err:  # _install moved it aside
            log(f"warning: {err}")
    elif state.status == "unrecorded":  # --from replaces it: keep the one found
        aside = _set_aside(final, folder, entry)
        log(f"warning: {final} was not verified by avsbench download; moved to {aside}")

    staging = folder / store.PARTIAL_DIR / entry.name
    staging.mkdir(parents=True, exist_ok=True)
    if from_file is not None:
        fetched = _copy_in(Path(from_file), staging)
    elif entry.host == HUGGINGFACE:
        fetched = _from_huggingface(entry, staging, endpoint, quiet)
    elif entry.host == GOOGLE_DRIVE:
        fetched = _from_google_drive(entry, staging, quiet)
    else:
        raise ZooError(f"{entry.name}: unknown host {entry.host!r}")
    path = _install(entry, fetched, folder, record, refresh, log)
    shutil.rmtree(staging, ignore_errors=True)  # this command's own folder
    return path


def _install(entry: ZooEntry, file: Path, folder: Path, record: dict | None, refresh: bool,
             log: Callable[[str], None]) -> Path:  # fmt: skip
    """Verify `file`; rename it to the zoo path and record it, or move it aside."""
    recorded = None if (refresh or record is None) else record.get("sha256")
    try:
        digest, loaded = store.verify_file(entry, file, recorded)
    except ZooError as err:
        aside = _set_aside(file, folder, entry)
        raise ZooError(f"{err}; the file is kept aside in {aside} and not used") from err
    final = folder / entry.local_name
    os.replace(file, final)
    store.write_record_entry(folder, entry.name, store.record_entry(entry, final, digest, loaded))
    log(f"{entry.name}: verified ({loaded}); sha256 {digest} recorded in "
        f"{folder / store.RECORD_FILE}")  # fmt: skip
    log(f"{entry.name}: {final}")
    return final


def _set_aside(file: Path, folder: Path, entry: ZooEntry) -> Path:
    rejected = folder / store.REJECTED_DIR
    rejected.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = rejected / f"{entry.name}-{stamp}{file.suffix or '.pth'}"
    counter = 1
    while aside.exists():
        aside = rejected / f"{entry.name}-{stamp}-{counter}{file.suffix or '.pth'}"
        counter += 1
    os.replace(file, aside)
    return aside


def _copy_in(source: Path, staging: Path) -> Path:
    if not source.is_file():
        raise ZooError(f"--from {source}: no such file")
    target = staging / "from_file.pth"
    partial = staging / "from_file.pth.copying"
    shutil.copyfile(source, partial)
    os.replace(partial, target)
    return target


def _failure(entry: ZooEntry, url: str, err: BaseException, staging: Path) -> ZooError:
    text = " ".join(str(err).split()) or type(err).__name__
    if len(text) > 300:
        text = text[:300] + " ..."
    return ZooError(
        f"downloading {entry.name} from {url} failed ({type(err).__name__}: {text}); what "
        f"arrived is kept in {staging} and `avsbench download {entry.name}` resumes from it"
    )


def _library(name: str) -> Any:  # the module
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ZooError(
            f"avsbench download needs {name}: pip install -r requirements.txt ({err})"
        ) from err


def _from_huggingface(entry: ZooEntry, staging: Path, endpoint: str | None, quiet: bool) -> Path:
    """The file through huggingface_hub's own pieces: `hf_hub_url` + `get_hf_file_metadata`
    (HEAD: ETag, size, redirect) + `file_download.http_get` (GET with Range, retries that
    resume). Not `hf_hub_download`: its 2.x writes each run to a new temporary file, so a
    second run could not continue the first. The partial file is named by the ETag (the
    content's sha256 for large files): a changed upstream file starts afresh. No token is
    sent (the zoo's repositories are public)."""
    hf = _library("huggingface_hub")
    from huggingface_hub.errors import (
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers, disable_progress_bars, enable_progress_bars

    if entry.repo_id is None or entry.upstream_file is None:
        raise ZooError(f"{entry.name}: its row names no Hugging Face repository and file")
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    url = hf.hf_hub_url(entry.repo_id, entry.upstream_file, revision=entry.revision,
                        endpoint=endpoint)  # fmt: skip
    try:
        meta = hf.get_hf_file_metadata(url, token=False, endpoint=endpoint)
    except (RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise ZooError(
            f"{entry.name}: {entry.upstream_file} is not in {entry.repo_id} at {entry.revision} "
            f"({type(err).__name__}){'; ' + entry.note if entry.note else ''}"
        ) from err
    except Exception as err:  # noqa: BLE001 -- httpx, OSError, HfHubHTTPError: one line
        raise _failure(entry, url, err, staging) from err
    if not meta.etag:
        raise ZooError(f"{entry.name}: {url} sends no ETag; cannot resume or pin the file")
    partial = staging / (re.sub(r"[^\w.-]", "_", meta.etag) + ".incomplete")
    for other in staging.glob("*.incomplete"):  # this command's own, of another version
        if other != partial:
            other.unlink()
    if quiet:
        disable_progress_bars()
    try:
        with open(partial, "ab") as out:
            http_get(
                meta.location,
                out,
                resume_size=out.tell(),
                headers=build_hf_headers(token=False),
                expected_size=meta.size,
                displayed_filename=entry.upstream_file,
            )
    except Exception as err:  # noqa: BLE001 -- httpx, OSError, HfHubHTTPError: one line
        raise _failure(entry, url, err, staging) from err
    finally:
        if quiet:
            enable_progress_bars()
    done = staging / "download.pth"
    os.replace(partial, done)
    return done


def _from_google_drive(entry: ZooEntry, staging: Path, quiet: bool) -> Path:
    gdown = _library("gdown")
    target = staging / "download.pth"
    try:
        found = gdown.download(
            entry.source_url, output=str(target), quiet=quiet, resume=True, use_cookies=False
        )
    except Exception as err:  # noqa: BLE001 -- requests and gdown errors: one line
        failure = _failure(entry, entry.source_url, err, staging)
        raise ZooError(
            f"{failure}; or download it in a browser from {entry.source_url} and run "
            f"`avsbench download {entry.name} --from FILE`"
        ) from err
    if not found or not Path(found).is_file():
        raise ZooError(f"downloading {entry.name} from {entry.source_url} gave no file")
    return Path(found)
