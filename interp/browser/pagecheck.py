"""Drive the served app in headless Chromium (Selenium): open a page and time it until it is fully
drawn, find overlapping content, save screenshots. Used by the real-browser tests and by
``scripts/bench_browser.py``; needs Debian's ``chromium`` and ``chromium-driver`` and the dev
dependency ``selenium``.

A page counts as drawn when the app's end-of-page marker for that page is in the DOM (the app
writes it last, see ``apps/browser.py``), Streamlit reports no running script, no element is
stale, and every chart has drawn its canvas/svg.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

# Leaf blocks whose boxes must not intersect: text, tables, charts, buttons, context lines.
CONTENT = ('[data-testid="stMarkdownContainer"], [data-testid="stVegaLiteChart"], '
           '[data-testid="stButton"], [data-testid="stMetric"], [data-testid="stCode"], '
           '[data-testid="stDataFrame"], table.vocab, div.ctx, div.ex')

_READY_JS = """
const key = arguments[0];
if (!document.querySelector('[data-page-end="' + key + '"]')) return false;
if (document.querySelector('[data-testid="stStatusWidget"] [data-testid="stStatusWidgetRunningIcon"]')) return false;
if (document.querySelector('[data-stale="true"]')) return false;
for (const c of document.querySelectorAll('[data-testid="stVegaLiteChart"]'))
  if (!c.querySelector('canvas, svg')) return false;
return true;
"""

_OVERLAP_JS = """
const sel = arguments[0];
const els = Array.from(document.querySelectorAll(sel)).filter(e => {
  const r = e.getBoundingClientRect(); return r.width > 1 && r.height > 1;
});
// keep the innermost matches only (a container and its own child are not an overlap)
const leaves = els.filter(e => !els.some(o => o !== e && e.contains(o)));
const out = [];
for (let i = 0; i < leaves.length; i++) {
  const a = leaves[i].getBoundingClientRect();
  for (let j = i + 1; j < leaves.length; j++) {
    if (leaves[i].contains(leaves[j]) || leaves[j].contains(leaves[i])) continue;
    const b = leaves[j].getBoundingClientRect();
    const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
    const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    if (w > 1 && h > 1) out.push([leaves[i].outerHTML.slice(0, 120), leaves[j].outerHTML.slice(0, 120), w, h]);
  }
}
return out;
"""

_CLIPPED_JS = """
// context lines whose text is cut off: wider than their box without a way to scroll to it
const out = [];
for (const e of document.querySelectorAll('div.ctx')) {
  const s = getComputedStyle(e);
  if (e.scrollWidth > e.clientWidth + 1 && s.overflowX !== 'auto' && s.overflowX !== 'scroll')
    out.push(e.innerText.slice(0, 80));
}
return out;
"""


def available() -> bool:
    return bool(shutil.which(CHROMIUM)) and Path(DRIVER).exists()


def chrome(width: int = 1600, height: int = 1000) -> Any:
    """A headless Chromium window of ``width`` x ``height`` CSS pixels."""
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_window_size(width, height)
    return driver


def wait_drawn(driver: Any, key: str, timeout: float = 60) -> float:
    """Seconds until the page with end marker ``key`` is drawn (polled every 10 ms)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if driver.execute_script(_READY_JS, key):
            return time.perf_counter() - t0
        time.sleep(0.01)
    raise TimeoutError(f"page {key!r} was not drawn within {timeout} s")


def load_page(driver: Any, url: str, key: str, timeout: float = 60) -> float:
    """Navigate to ``url`` (a full load) and return the seconds until page ``key`` is drawn."""
    t0 = time.perf_counter()
    driver.get(url)
    wait_drawn(driver, key, timeout)
    return time.perf_counter() - t0


def click_and_time(driver: Any, css: str, key: str, timeout: float = 60) -> float:
    """Click the element matching ``css`` (in-app navigation) and time until page ``key`` is drawn."""
    el = driver.find_element("css selector", css)
    t0 = time.perf_counter()
    el.click()
    wait_drawn(driver, key, timeout)
    return time.perf_counter() - t0


def expand_all(driver: Any) -> None:
    """Open every collapsed expander (quantile bands), so their contexts are laid out."""
    for s in driver.find_elements("css selector", '[data-testid="stExpander"] details:not([open]) summary'):
        driver.execute_script("arguments[0].click()", s)
    time.sleep(0.3)


def overlaps(driver: Any) -> list[list]:
    """Pairs of content elements whose bounding boxes intersect (more than 1 px each way)."""
    return driver.execute_script(_OVERLAP_JS, CONTENT)


def clipped_contexts(driver: Any) -> list[str]:
    """Context lines wider than their box that neither wrap nor scroll."""
    return driver.execute_script(_CLIPPED_JS)


def screenshot(driver: Any, path: str | Path) -> Path:
    """Full-page PNG (the window is stretched to the page's height first)."""
    w = driver.execute_script("return window.innerWidth")
    h = driver.execute_script(
        "const m = document.querySelector('[data-testid=\"stMain\"]') || document.body;"
        "return Math.max(m.scrollHeight, document.body.scrollHeight)")
    driver.set_window_size(w, min(max(h + 120, 800), 6000))
    time.sleep(0.3)
    driver.save_screenshot(str(path))
    return Path(path)
