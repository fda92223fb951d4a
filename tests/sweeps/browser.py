"""Real servers and a real headless Chromium, for tests that look at what a user sees.

The browser is Debian's Chromium driven through Selenium and Debian's chromedriver; both
paths are given explicitly so that Selenium never tries to download a driver (the test
machines have no way out to the internet).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

logger = logging.getLogger(__name__)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Without these, Chromium on a machine with no route out keeps retrying refused connections
# (component updates, sync, QUIC probes) and a page load can hang behind them.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
)
REPOSITORY = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR_VARIABLE = "SWEEP_SCREENSHOT_DIR"

T = TypeVar("T")


def screenshot_dir() -> Path:
    """Where page screenshots go: ``$SWEEP_SCREENSHOT_DIR``, else ``test-output/screenshots``.

    The default lies in the repository (ignored by git), not in pytest's temporary
    folders, so that the pictures of the last run are still there to look at afterwards.
    """
    folder = Path(
        os.environ.get(SCREENSHOT_DIR_VARIABLE) or REPOSITORY / "test-output" / "screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def _stop(process: subprocess.Popen) -> None:
    # The servers fork workers (uvicorn, gunicorn); each was started in a session of its
    # own, so its process group holds exactly the processes it started.
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


@contextlib.contextmanager
def serving(
    commands: dict[str, tuple[Sequence[str], str]], log_dir: Path, *, timeout: float = 120.0
) -> Iterator[None]:
    """Start web servers side by side, wait until each answers, and stop them all on exit.

    Args:
        commands: By a short name, the command line of a server and a URL of it that
            answers 200 once it is ready.
        log_dir: Where each server's output goes, as ``<name>.log``.
        timeout: Seconds to wait for all of them to answer.

    Raises:
        RuntimeError: A server exited, or did not answer in time; the message holds the
            end of its log.
    """
    processes: dict[str, subprocess.Popen] = {}
    logs = {name: log_dir / f"{name}.log" for name in commands}
    try:
        for name, (command, _) in commands.items():
            with logs[name].open("wb") as log:
                processes[name] = subprocess.Popen(
                    list(command),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        waiting = {name: url for name, (_, url) in commands.items()}
        deadline = time.monotonic() + timeout
        while waiting:
            for name, url in list(waiting.items()):
                if processes[name].poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with status {processes[name].returncode} before it "
                        f"answered at {url}; its log ({logs[name]}) ends:\n{_tail(logs[name])}"
                    )
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            del waiting[name]
                            waited = timeout - (deadline - time.monotonic())
                            logger.info("%s answered after %.1f s", name, waited)
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
            if waiting and time.monotonic() > deadline:
                name, url = next(iter(waiting.items()))
                raise RuntimeError(
                    f"{name} did not answer at {url} within {timeout:.0f} s; its log "
                    f"({logs[name]}) ends:\n{_tail(logs[name])}"
                )
            if waiting:
                time.sleep(0.25)
        yield
    finally:
        for process in processes.values():
            _stop(process)


def require_browser() -> None:
    """Check that Chromium and chromedriver are installed where Debian puts them.

    Raises:
        RuntimeError: One is missing; the message says how to install both.
    """
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not found; install Debian's browser and its driver with "
            "`apt-get install -y chromium chromium-driver`"
        )


@contextlib.contextmanager
def chromium(profile_dir: Path, log_path: Path) -> Iterator[WebDriver]:
    """A headless Chromium with a fresh profile, closed on exit.

    Args:
        profile_dir: An empty folder for the browser's profile.
        log_path: Where chromedriver writes its log.

    Raises:
        RuntimeError: Chromium or chromedriver is not installed where Debian puts them.
    """
    require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    service = Service(str(CHROMEDRIVER), log_output=str(log_path))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


class Pages:
    """A browser that waits for single-page apps to render and keeps a picture of each page.

    Args:
        driver: The browser.
        screenshots: The folder the pictures go to.
        timeout: Seconds to wait for something to appear on a page.
    """

    def __init__(self, driver: WebDriver, screenshots: Path, *, timeout: float = 45.0) -> None:
        self.driver = driver
        self.screenshots = screenshots
        self.timeout = timeout

    def open(self, url: str) -> None:
        """Load a URL (the app renders after this returns; wait for what it shows)."""
        self.driver.get(url)

    def wait_for(self, what: str, page: str, condition: Callable[[WebDriver], T]) -> T:
        """Wait until ``condition`` returns something truthy, and return it.

        Elements that vanish or are re-rendered while the condition looks at them count
        as "not yet", as they do while an app is still loading.

        Args:
            what: What the user should see, for the failure message.
            page: The page's name; on failure its picture is saved as ``<page>-FAILED.png``.
            condition: Called with the driver until it returns something truthy.

        Raises:
            AssertionError: It did not appear in time; the message holds the page's text.
        """
        failed = self.screenshots / f"{page}-FAILED.png"
        failed.unlink(missing_ok=True)
        wait = WebDriverWait(
            self.driver,
            self.timeout,
            poll_frequency=0.25,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
        )
        try:
            return wait.until(condition)
        except TimeoutException:
            self.driver.save_screenshot(str(failed))
            raise AssertionError(
                f"{what} did not appear within {self.timeout:.0f} s at "
                f"{self.driver.current_url} (picture: {failed}); the page shows:\n"
                f"{self.visible_text()[:2000]}"
            ) from None

    def visible_text(self) -> str:
        """The text a user can read on the page now."""
        try:
            return self.driver.execute_script("return document.body.innerText") or ""
        except Exception:  # the page may be mid-navigation; the text only explains a failure
            return "(unreadable)"

    def screenshot(self, page: str) -> Path:
        """Save what the browser shows now as ``<page>.png`` and return its path."""
        path = self.screenshots / f"{page}.png"
        self.driver.save_screenshot(str(path))
        logger.info("screenshot %s", path)
        return path
