"""End to end in a real browser: serve the app on a loopback port, open it in headless Chromium
(Selenium), go to a feature, check the highlighted context is shown, save a screenshot."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import PLANTED_TOKEN

REPO = Path(__file__).resolve().parents[2]
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (shutil.which(CHROMIUM) and Path(DRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; "
           ".ci/run installs them)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{proc.stdout.read()}")
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read().strip() == b"ok":
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"the app did not come up at {url}")


@pytest.fixture
def server(browser_root):
    port = _free_port()
    env = {**os.environ, "INTERP_RUNS": str(browser_root), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "apps" / "browser.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_feature_page_in_headless_chromium(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=DRIVER))
    try:
        wait = WebDriverWait(driver, 60)  # generous: CI machines are shared
        driver.get(f"{server}/?run=stores/topk")
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "features shown"))
        box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, 'input[type="number"]')))
        box.send_keys("\b\b\b0\n")  # the "open feature by id" box (already 0: clears and retypes)
        driver.find_element(By.XPATH, "//button[.//p[text()='Open']]").click()
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "Similar features"))
        wait.until(lambda d: "features shown" not in d.find_element(By.TAG_NAME, "body").text)  # old page gone
        qual = driver.find_element(By.CSS_SELECTOR, "span.tok.qual")
        assert "Feature 0" in driver.find_element(By.TAG_NAME, "h2").text
        assert qual.text == PLANTED_TOKEN
        assert qual.value_of_css_property("background-color") == "rgba(255, 140, 0, 1)"  # full highlight
        shot = tmp_path / "feature-0.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()
