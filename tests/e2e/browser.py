"""A real headless Chromium (Debian's ``chromium``, driven by selenium through
``chromium-driver``) for the dashboard's tests: ``scripts/setup-browser.sh`` installs both.

Selenium's calls block: the tests run them in a thread (``asyncio.to_thread``) so that the
event loop, which supervises the platform's processes, keeps running.
"""

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

T = TypeVar("T")

CHROMIUM = ("chromium", "chromium-browser")
DRIVER = "chromedriver"
# FAAS_DASHBOARD_SCREENSHOTS=docs/img: the tests save a screenshot of each page there.
SCREENSHOTS_ENV = "FAAS_DASHBOARD_SCREENSHOTS"


def browser_paths() -> tuple[str, str]:
    """Chromium's and chromedriver's paths; a skip (a failure when FAAS_REQUIRE_DOCKER=1, as in
    CI, whose set-up installs them) without them."""
    binary = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    driver = shutil.which(DRIVER)
    if binary is None or driver is None:
        why = "chromium and chromedriver are not installed: run scripts/setup-browser.sh"
        if os.environ.get("FAAS_REQUIRE_DOCKER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return binary, driver


def start_browser() -> WebDriver:
    binary, driver = browser_paths()
    options = Options()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


class Page:
    """The dashboard in one browser tab, at ``base`` (``http://127.0.0.1:<port>``)."""

    def __init__(self, driver: WebDriver, base: str, timeout: float = 60.0) -> None:
        self.driver = driver
        self.base = base
        self.timeout = timeout
        self.shots = Path(os.environ[SCREENSHOTS_ENV]) if os.environ.get(SCREENSHOTS_ENV) else None

    def open(self, fragment: str = "") -> None:
        """``/ui/#/<fragment>``, without reloading when the dashboard is already open; returns
        once that page is mounted (``body[data-route]``), not while the last one still shows."""
        if self.driver.current_url.startswith(f"{self.base}/ui/"):
            self.driver.execute_script("location.hash = arguments[0]", f"#/{fragment}")
        else:
            self.driver.get(f"{self.base}/ui/#/{fragment}")
        self.wait(lambda: self.driver.execute_script("return document.body.dataset.route") == f"#/{fragment}")

    def sign_in(self, token: str) -> None:
        self.driver.get(f"{self.base}/ui/")
        self.wait(lambda: self.find("#signin").is_displayed() or self.find("#nav").is_displayed())
        if self.find("#signin").is_displayed():
            self.find("#token").send_keys(token)
            self.find("#signin-form button").click()
        self.wait(lambda: self.find("#nav").is_displayed())

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        """The element's text, "" while it is not there."""
        found = self.driver.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found else ""

    def wait(self, until: Callable[[], T], timeout: float | None = None) -> T:
        """Poll ``until`` (exceptions count as not yet) until it returns something truthy; an
        AssertionError with what the page shows after ``timeout``."""
        try:
            result: T = WebDriverWait(self.driver, timeout or self.timeout, poll_frequency=0.1).until(
                lambda _: _quiet(until)
            )
        except TimeoutException:
            shown = self.text("main") or self.text("body")
            raise AssertionError(f"not met at {self.driver.current_url}; the page shows:\n{shown[:2000]}") from None
        return result

    def wait_text(self, css: str, *fragments: str, timeout: float | None = None) -> str:
        """The text of ``css`` once it holds every fragment."""
        try:
            return self.wait(lambda: (t := self.text(css)) and all(f in t for f in fragments) and t, timeout)
        except AssertionError as err:
            raise AssertionError(f"{css} never showed {fragments}: {self.text(css)!r}\n{err}") from None

    def screenshot(self, name: str) -> None:
        if self.shots is not None:
            self.shots.mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(self.shots / f"dashboard-{name}.png"))

    def script_problems(self) -> list[str]:
        """What the browser's console reported since the last call about the pages' code: a
        script error, or anything the Content-Security-Policy refused (not an API's 4xx)."""
        logs: list[dict[str, Any]] = self.driver.get_log("browser")
        return [
            e["message"]
            for e in logs
            if e.get("level") == "SEVERE" and ("Content Security Policy" in e["message"] or "Uncaught" in e["message"])
        ]


def _quiet(until: Callable[[], T]) -> T | None:
    try:
        return until()
    except Exception:
        return None
