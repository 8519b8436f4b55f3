"""`avsbench app` in a real browser: the system's headless Chromium driven by Playwright.

The app runs as the user starts it (`python -m avsbench.cli app`, a subprocess on a free
local port) with a tiny untrained checkpoint and a wrong one in its models folder. The
test uploads a file that is not a video, picks a video without sound from --video_dir,
uploads a 3-s video with sound, picks the wrong checkpoint, and checks what a person
sees: the one-line errors, the overlay playing with its sound, the timeline, the
downloads; then SIGTERM stops the app and its folder (uploads, results) is gone. A
screenshot of each state goes to the test's tmp_path, and to $AVSBENCH_APP_SCREENSHOTS
as app_*.png when set (docs/APP.md:
`AVSBENCH_APP_SCREENSHOTS=docs/images pytest tests/app/test_browser.py`).

Chromium: scripts/install_browser.sh installs Debian's `chromium` (no browser download);
$AVSBENCH_CHROMIUM names another binary. Without one the test is skipped, saying so.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from avsbench.app.server import READY_LINE
from tests.app.app_fixtures import (
    VIDEO_HEIGHT,
    VIDEO_SECONDS,
    VIDEO_WIDTH,
    make_clip,
    save_tiny_checkpoint,
)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
START_TIMEOUT_S = 120  # gradio's import is slow on a busy 2-core machine
RESULT_TIMEOUT_MS = 120_000
PROGRESS_TEXT = "text=/loading the model|predicting|\\d+ s of \\d+ s/"


def chromium_binary() -> str | None:
    configured = os.environ.get("AVSBENCH_CHROMIUM")
    if configured:
        return configured
    return next((found for n in CHROMIUM_NAMES if (found := shutil.which(n))), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningApp:
    """`avsbench app` as a subprocess; `lines` collects its stderr."""

    def __init__(self, models: Path, videos: Path, tmp: Path, max_upload_mb: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = os.environ | {"TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "avsbench.cli", "app", "--port", str(self.port)]
        command += ["--models_dir", str(models), "--video_dir", str(videos)]
        command += ["--max_upload_mb", str(max_upload_mb)]
        self.process = subprocess.Popen(
            command + ["--device", "cpu"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(START_TIMEOUT_S):
            self.stop()
            pytest.fail("the app did not start:\n" + "".join(self.lines))
        found = re.search(r"results in (\S+), removed", self.lines[-1])
        assert found, self.lines[-1]
        self.work_dir = Path(found.group(1))

    def _read(self) -> None:
        for line in self.process.stderr:  # type: ignore[union-attr]
            self.lines.append(line)
            if line.startswith(READY_LINE):
                self.ready.set()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(60)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


class Screens:
    """Screenshots of each state: tmp_path/<name>.png and $AVSBENCH_APP_SCREENSHOTS."""

    def __init__(self, page, folder: Path) -> None:
        self.page, self.folder = page, folder
        self.extra = os.environ.get("AVSBENCH_APP_SCREENSHOTS")

    def take(self, name: str, settle: bool = True) -> None:
        if settle:
            self.page.wait_for_timeout(700)  # toasts and the video fade in
        path = self.folder / f"app_{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert Image.open(path).size[0] > 0
        if self.extra:
            Path(self.extra).mkdir(parents=True, exist_ok=True)
            small = Image.open(path).convert("RGB")
            small = small.quantize(colors=128)  # docs images: small PNGs
            small.save(Path(self.extra) / path.name, optimize=True)


def toast_text(page) -> str:
    """The text of the error toast on the page."""
    toast = page.locator("[data-testid=toast-text]").first
    toast.wait_for(timeout=RESULT_TIMEOUT_MS)
    return toast.inner_text()


def close_toast(page) -> None:
    page.locator("[data-testid=toast-close]").first.click(force=True)
    page.wait_for_function("() => !document.querySelector('[data-testid=toast-text]')")


def upload(page, path: Path) -> None:
    """Drop `path` into the video box (the previous file cleared first)."""
    if page.locator("#upload td.filename").count():
        page.click("#upload button[aria-label=Clear]", force=True)
    page.wait_for_selector("#upload input[type=file]", state="attached")
    page.set_input_files("#upload input[type=file]", str(path))
    page.wait_for_selector(f"#upload td.filename[aria-label='{path.name}']")


def pick(page, dropdown: str, option: str) -> None:
    page.click(f"{dropdown} input")
    page.click(f"[data-testid=dropdown-option][aria-label='{option}']")


def assert_one_line(text: str, *needles: str) -> None:
    assert "\n" not in text and "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text


@pytest.fixture
def app_files(tmp_path):
    models = tmp_path / "models"
    save_tiny_checkpoint("s4", models / "tiny_s4.pth")
    (models / "wrong.pth").write_bytes(b"this is not a checkpoint\n" * 40)
    videos = tmp_path / "videos"
    videos.mkdir()
    notes = videos / "notes.mp4"
    notes.write_text("a text file named like a video\n")
    mute = make_clip(videos / "mute.mp4", sound=False)
    return models, make_clip(videos / "clip.mp4"), mute, notes


def test_app_in_a_real_browser(tmp_path, app_files):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium installed: run scripts/install_browser.sh (apt chromium)")
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    models, clip, mute, notes = app_files
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    started = time.perf_counter()
    app = RunningApp(models, clip.parent, tmp)
    print(f"app started in {time.perf_counter() - started:.1f} s")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=binary,
                headless=True,
                args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            screens = Screens(page, shots)
            page.goto(app.url)
            page.wait_for_function(
                "() => document.querySelector('#model_info')?.innerText.includes('S4')",
                timeout=RESULT_TIMEOUT_MS,
            )
            assert "tiny_s4.pth" in page.inner_text("#model_info")
            screens.take("start")

            # a file that is not a video
            upload(page, notes)
            page.click("#run")
            text = toast_text(page)
            assert_one_line(text, "notes.mp4", "not a readable video")
            assert str(app.work_dir) not in text  # the upload's temporary path is not shown
            screens.take("error_not_a_video")
            close_toast(page)

            # a video without sound, picked from --video_dir (the upload cleared)
            page.click("#upload button[aria-label=Clear]", force=True)
            page.wait_for_selector("#upload input[type=file]", state="attached")
            pick(page, "#picked_video", "mute.mp4")
            page.click("#run")
            assert_one_line(toast_text(page), "mute.mp4", "no audio track", "--allow-silence")
            close_toast(page)

            # the video with sound, at threshold 0.4 (the untrained model's sigmoid is
            # about 0.41 everywhere: the whole frame sounds; at 0.5 nothing would)
            upload(page, clip)
            page.fill("#threshold input[type=number]", "0.4")
            page.press("#threshold input[type=number]", "Enter")
            page.click("#run")
            started = time.perf_counter()
            try:  # the progress line, if the run lasts long enough to see it (a screenshot)
                page.wait_for_selector(PROGRESS_TEXT, timeout=5000)
                screens.take("running", settle=False)
            except PlaywrightTimeout:
                print("the run ended before its progress could be seen")
            page.wait_for_selector("#overlay video", timeout=RESULT_TIMEOUT_MS)
            page.wait_for_selector("#timeline img", timeout=RESULT_TIMEOUT_MS)
            elapsed = time.perf_counter() - started
            assert page.locator("[data-testid=toast-text]").count() == 0
            status = page.inner_text("#status")
            assert f"{VIDEO_SECONDS} s of video" in status, status
            check_overlay_plays_with_sound(page)
            check_timeline(page)
            assert "sounding object" in page.inner_text("#legend")
            screens.take("result")
            check_downloads(page, app)

            # a wrong checkpoint picked
            pick(page, "#model", "wrong.pth")
            assert_one_line(toast_text(page), "wrong.pth", "cannot read --weights file")
            screens.take("error_wrong_checkpoint")
            browser.close()
        check_upload_limit(app)
        print(f"result in {elapsed:.1f} s")
    finally:
        status = app.stop(signal.SIGTERM)
    assert status == 128 + signal.SIGTERM, "".join(app.lines)
    assert not app.work_dir.exists()  # uploads and results removed on SIGTERM
    assert list(tmp.iterdir()) == []
    assert not any("Traceback" in line for line in app.lines), "".join(app.lines)


def check_overlay_plays_with_sound(page) -> None:
    """The result video element plays (currentTime advances) and decodes audio bytes."""
    played = page.evaluate(
        """async () => {
            const v = document.querySelector('#overlay video');
            v.muted = false;
            await v.play();
            await new Promise(r => setTimeout(r, 1200));
            v.pause();
            return {time: v.currentTime, duration: v.duration,
                    audio: v.webkitAudioDecodedByteCount, video: v.webkitVideoDecodedByteCount,
                    width: v.videoWidth, height: v.videoHeight, src: v.currentSrc};
        }"""
    )
    assert played["time"] > 0.3, played
    assert abs(played["duration"] - VIDEO_SECONDS) < 0.2, played
    assert played["audio"] > 0 and played["video"] > 0, played  # sound decoded
    assert (played["width"], played["height"]) == (VIDEO_WIDTH, VIDEO_HEIGHT), played
    with av.open(io.BytesIO(fetch(played["src"]))) as served:  # the served file itself
        assert len(served.streams.audio) == 1 and len(served.streams.video) == 1
        assert served.streams.audio[0].codec_context.name == "aac"


def check_timeline(page) -> None:
    """The timeline image is shown and drawn (not blank)."""
    size = page.evaluate(
        "() => { const i = document.querySelector('#timeline img');"
        " return [i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().height]; }"
    )
    assert size[0] >= 400 and size[1] >= 150 and size[2] > 50, size
    src = page.get_attribute("#timeline img", "src")
    assert src and src.startswith("data:image/png")


def check_downloads(page, app: RunningApp) -> None:
    """The download links serve the masks zip (one PNG per second at the video's size,
    0/1 values) and summary.json (3 seconds, the page's threshold recorded)."""
    links = page.evaluate(
        "() => ['#masks_zip a', '#summary_file a'].map(s => document.querySelector(s).href)"
    )
    archive = zipfile.ZipFile(io.BytesIO(fetch(links[0])))
    names = sorted(archive.namelist())
    assert names == [f"masks/{s:05d}.png" for s in range(VIDEO_SECONDS)]
    for name in names:
        mask = np.asarray(Image.open(io.BytesIO(archive.read(name))))
        assert mask.shape == (VIDEO_HEIGHT, VIDEO_WIDTH) and set(np.unique(mask)) <= {0, 1, 255}
    summary = json.loads(fetch(links[1]))
    assert summary["num_seconds"] == VIDEO_SECONDS
    assert summary["app"] == {"threshold": 0.4}  # the page's value reached the server
    assert all(entry["area_fraction"] == 1.0 for entry in summary["seconds"])
    assert summary["video"]["audio"] is not None
    assert all(str(app.work_dir) in link for link in links)  # served from the app's folder


def check_upload_limit(app: RunningApp) -> None:
    """An upload over --max_upload_mb (1 MB) is refused by the server and not kept."""
    import httpx

    big = os.urandom(int(1.5 * 1024 * 1024))
    response = httpx.post(
        f"{app.url}/gradio_api/upload", files={"files": ("big.mp4", big)}, timeout=60
    )
    assert response.status_code == 413, (response.status_code, response.text[:300])
    assert not list(app.work_dir.rglob("big.mp4"))
