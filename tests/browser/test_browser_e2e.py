"""End to end in a real browser: serve the app on a loopback port, open it in headless Chromium
(Selenium), go to a feature, check the highlighted context is shown, and check that no two
content elements overlap at 1600 and 1280 px, long contexts included."""

import re

import pytest

from interp.browser import pagecheck as pc
from interp.browser.serve import serve

from .conftest import N_TOKENS, PLANTED_TOKEN, STORE_OPTIONS

pytestmark = pytest.mark.skipif(
    not pc.available(),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; "
    ".ci/run installs them)",
)

# a window of 101 tokens: a context line far wider than its column unless it wraps
WIDE = {**STORE_OPTIONS, "window_left": 60, "window_right": 40, "seq_len": 128}


@pytest.fixture(scope="module")
def server(browser_root, tiny_model, _tiny_corpus_file):
    from interp.browser import build_store

    build_store(
        browser_root / "artifacts" / "topk",
        str(_tiny_corpus_file),
        N_TOKENS,
        browser_root / "stores" / "wide",
        model=tiny_model,
        progress=False,
        **WIDE,
    )
    with serve(browser_root) as url:
        yield url


@pytest.fixture
def driver():
    d = pc.chrome(1400)
    yield d
    d.quit()


def test_feature_page_in_headless_chromium(server, driver, tmp_path):
    from selenium.webdriver.common.by import By

    pc.load_page(driver, f"{server}/?run=stores/topk", "list")
    box = driver.find_element(By.CSS_SELECTOR, 'input[type="number"]')  # "open feature by id" (already 0)
    box.send_keys("\b\b\b0\n")
    driver.find_element(By.XPATH, "//button[.//p[text()='Open']]").click()
    pc.wait_drawn(driver, "feature-0")
    qual = driver.find_element(By.CSS_SELECTOR, "span.tok.qual")
    assert "Feature 0" in driver.find_element(By.TAG_NAME, "h2").text
    assert qual.text == PLANTED_TOKEN
    assert qual.value_of_css_property("background-color") == "rgba(255, 140, 0, 1)"  # full highlight
    g = _first_similar(driver)
    pc.click_and_time(driver, f"div.st-key-sim-{g} button", f"feature-{g}")  # in-app navigation
    assert f"Feature {g}" in driver.find_element(By.TAG_NAME, "h2").text
    shot = pc.screenshot(driver, tmp_path / "feature.png")
    assert shot.stat().st_size > 10_000


def _first_similar(driver) -> str:
    b = driver.find_element("css selector", 'div[class*="st-key-sim-"] button')
    return re.match(r"#(\d+)", b.text).group(1)


PAGES = [
    ("stores/wide", 0),
    ("stores/topk", 0),
    ("stores/attn_svd/layer-01", 7),
    ("stores/lib/node-0", 3),
    ("stores/itda", 1),
    ("stores/snmf", 2),
    ("stores/dense", 4),
]


@pytest.mark.parametrize("width", [1600, 1280])
def test_nothing_overlaps(server, width):
    driver = pc.chrome(width)
    try:
        for run, i in PAGES:
            pc.load_page(driver, f"{server}/?run={run}&feature={i}", f"feature-{i}")
            pc.expand_all(driver)
            assert driver.find_elements("css selector", "div.ctx"), run
            assert pc.overlaps(driver) == [], (run, width)
            assert pc.clipped_contexts(driver) == [], (run, width)
            labels = driver.find_elements("css selector", 'div[class*="st-key-sim-"] button p')
            assert labels, run
            for p in labels:  # id and cosine, shown in full
                assert re.fullmatch(r"#\d+ · cos -?\d\.\d\d", p.text), p.text
                assert driver.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth + 1", p)
    finally:
        driver.quit()
