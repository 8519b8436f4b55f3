"""Start and stop `avsbench app`: the app's own folder, the gradio server, the cleanup.

The app owns one temporary folder, created at start (`avsbench-app-*` in the system's
temporary folder): gradio's uploads and cache (GRADIO_TEMP_DIR) and the prediction runs
live there, and it is removed when the app stops: a normal exit, Ctrl-C, or SIGTERM (the
command line turns SIGTERM into Ctrl-C, `avsbench.stop_signals`).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from avsbench.errors import InputError

WORK_DIR_PREFIX = "avsbench-app-"
READY_LINE = "avsbench app: serving on"  # printed once the page answers (tests wait for it)


def serve(
    *,
    models_dir: Path,
    video_dir: Path | None,
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str | None = None,
    vggish_weights: Path | None = None,
    max_upload_mb: int = 500,
) -> int:
    """Serve the app until Ctrl-C / SIGTERM; the app's folder is removed on the way out.
    InputError for a port already in use or bad folders."""
    if video_dir is not None and not video_dir.is_dir():
        raise InputError(f"--video_dir {video_dir}: not a folder")
    if models_dir.exists() and not models_dir.is_dir():
        raise InputError(f"--models_dir {models_dir}: not a folder")
    if vggish_weights is not None and not vggish_weights.is_file():
        raise InputError(f"--vggish_weights {vggish_weights}: no such file")
    check_port_free(host, port)  # before the slow import of gradio
    work_dir = Path(tempfile.mkdtemp(prefix=WORK_DIR_PREFIX))
    demo = None
    try:
        # before gradio is imported: its cache and uploads go into the app's folder, and it
        # phones nowhere (no analytics; the page works without the internet)
        os.environ["GRADIO_TEMP_DIR"] = str(work_dir)
        os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
        try:
            import gradio as gr
        except ImportError as exc:
            raise InputError(
                f"avsbench app needs gradio ({exc}): pip install -r requirements.txt"
            ) from None

        from avsbench.app import ui

        config = ui.AppConfig(
            models_dir=models_dir.expanduser().absolute(),
            video_dir=video_dir.expanduser().absolute() if video_dir else None,
            work_dir=work_dir,
            device=device,
            vggish_weights=vggish_weights.absolute() if vggish_weights else None,
            max_file_size=max_upload_mb * 1024 * 1024,
        )
        demo = ui.build(config)
        demo.queue(default_concurrency_limit=1)
        theme = gr.themes.Default(
            font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
        )  # system fonts: nothing fetched from a font server
        try:
            demo.launch(
                server_name=host,
                server_port=port,
                prevent_thread_lock=True,
                max_file_size=config.max_file_size,
                allowed_paths=[str(work_dir)],
                show_error=True,
                quiet=True,
                inbrowser=False,
                share=False,
                theme=theme,
                css=ui.CSS,
                footer_links=[],
            )
        except OSError as exc:
            raise InputError(
                f"--port {port}: cannot serve on {host}:{port} ({exc}); pick a free port"
            ) from None
        if not _loopback(host):
            print(
                f"avsbench app: warning: --host {host} lets other machines use this app and "
                "read the checkpoints of the models folder through it",
                file=sys.stderr,
            )
        shown = f"[{host}]" if ":" in host else host
        print(
            f"{READY_LINE} http://{shown}:{port} (Ctrl-C stops it; uploads and results in "
            f"{work_dir}, removed then)",
            file=sys.stderr,
        )
        sys.stderr.flush()
        while True:
            time.sleep(0.5)
    finally:
        if demo is not None:
            demo.close()
        shutil.rmtree(work_dir, ignore_errors=True)


def check_port_free(host: str, port: int) -> None:
    """InputError naming the port when `host`:`port` cannot be bound (in use, or an address
    this machine does not have)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InputError(
                f"--port {port}: cannot serve on {host}:{port} ({exc.strerror or exc}); pick "
                "another --port, or stop what uses it"
            ) from None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
