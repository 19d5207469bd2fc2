"""The results viewer in a real browser (headless Chromium driven by selenium): the page loads with no console
error, the filters hide and show the right rows, and a response holding a script shows as text and never runs.

Skipped, saying why, only where no Chromium and chromedriver can be found (`make setup-dev` installs Debian's
``chromium`` and ``chromium-driver`` where it can; see docs/viewer.md).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from judge.view import PageServer, render_view
from tests.test_view import XSS, pairs_file, verdicts

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver")


def _find(names: tuple[str, ...], env: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    for name in names:
        found = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    binary = _find(_BROWSERS, "JUDGE_TEST_CHROMIUM")
    driver_path = _find(_DRIVERS, "JUDGE_TEST_CHROMEDRIVER")
    if binary is None or driver_path is None:
        pytest.skip("no Chromium browser and chromedriver found (install Debian's chromium and chromium-driver: "
                    "`make setup-dev` does it with root or passwordless sudo; see docs/viewer.md)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-extensions", "--no-first-run", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("view")
    path = tmp / "page.html"
    path.write_text(render_view(verdicts(), pairs_file(tmp), n_boot=50), encoding="utf-8")
    return path


def _severe(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]


def _shown(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [row.get_attribute("id") for row in driver.find_elements(By.CSS_SELECTOR, "tr.pair-row")
            if row.is_displayed()]


def test_page_loads_without_console_errors(browser: Any, page_file: Path) -> None:
    browser.get_log("browser")  # drop anything from before
    browser.get(page_file.as_uri())
    assert browser.title.startswith("Judge results")
    assert _shown(browser) == ["row-0", "row-1", "row-2", "row-3"]
    assert _severe(browser) == []


def test_filters_hide_and_show_the_right_rows(browser: Any, page_file: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(page_file.as_uri())
    count = browser.find_element(By.ID, "shown-count")

    def click(element_id: str) -> None:
        browser.find_element(By.ID, element_id).click()

    click("f-failed")
    assert _shown(browser) == ["row-3"] and count.text == "1"
    click("f-failed")
    click("f-disagree")
    assert _shown(browser) == ["row-1"]
    click("f-disagree")
    click("f-escalated")
    assert _shown(browser) == ["row-1"]
    click("f-escalated")
    click("f-wrong")
    assert _shown(browser) == ["row-1"]
    click("f-wrong")
    click("f-low")  # below 0.6: the 0.55 verdict (a failure has no confidence)
    assert _shown(browser) == ["row-1"]
    threshold = browser.find_element(By.ID, "f-threshold")
    threshold.clear()
    threshold.send_keys("0.95")
    assert _shown(browser) == ["row-0", "row-1", "row-2"]
    click("f-low")
    Select(browser.find_element(By.ID, "f-rule")).select_by_value("spec/be-honest")
    assert _shown(browser) == ["row-2"]
    Select(browser.find_element(By.ID, "f-rule")).select_by_value("")
    assert _shown(browser) == ["row-0", "row-1", "row-2", "row-3"] and count.text == "4"
    assert _severe(browser) == []


def test_a_script_in_a_response_shows_as_text_and_never_runs(browser: Any, page_file: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    browser.get(page_file.as_uri())
    button = browser.find_element(By.CSS_SELECTOR, "#row-2 button.toggle")
    button.click()
    detail = browser.find_element(By.ID, "detail-2")
    assert detail.is_displayed() and button.get_attribute("aria-expanded") == "true"
    assert detail.find_element(By.CSS_SELECTOR, "pre.response-a").text == XSS
    assert detail.find_element(By.CSS_SELECTOR, "pre.prompt").text == XSS
    assert detail.find_element(By.CSS_SELECTOR, "p.rationale").text == XSS
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    assert browser.execute_script("return window.pwned === undefined") is True
    assert browser.find_elements(By.CSS_SELECTOR, "#detail-2 img") == []
    assert _severe(browser) == []


def test_the_served_page_loads_without_console_errors(browser: Any, page_file: Path) -> None:
    server = PageServer(page_file.read_text(encoding="utf-8"), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        browser.get_log("browser")
        browser.get(server.url)
        assert _shown(browser) == ["row-0", "row-1", "row-2", "row-3"]
        assert _severe(browser) == []
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
