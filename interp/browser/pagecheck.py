"""Drive the served app in headless Chromium (Selenium): open a page and time it until it is fully
drawn, find overlapping content, save screenshots. Used by the real-browser tests and by
``interp bench browser``; needs Debian's ``chromium`` and ``chromium-driver`` and the dev
dependency ``selenium``.

A page counts as drawn when the app's end-of-page marker for that page enters the DOM (the app
writes it last, see ``apps/browser.py``, so every element before it has been rendered); the
moment is taken by a MutationObserver in the page itself, on the page's clock.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from interp.errors import InterpError

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

# Leaf blocks whose boxes must not intersect: text, tables, charts, buttons, context lines.
CONTENT = (
    '[data-testid="stMarkdownContainer"], [data-testid="stVegaLiteChart"], '
    '[data-testid="stButton"], [data-testid="stMetric"], [data-testid="stCode"], '
    '[data-testid="stDataFrame"], table.vocab, div.ctx, div.ex, div.explain'
)

# Injected before any page script: records when each end-of-page marker first enters the DOM
# (performance.now(), milliseconds since the navigation started), so timings do not depend on how
# often the test polls.
_OBSERVER_JS = """
window.__drawn = {};
new MutationObserver(() => {
  for (const e of document.querySelectorAll('[data-page-end]')) {
    const k = e.getAttribute('data-page-end');
    if (!(k in window.__drawn)) window.__drawn[k] = performance.now();
  }
}).observe(document, {subtree: true, childList: true});
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
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_window_size(width, height)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _OBSERVER_JS})
    driver.execute_cdp_cmd("Performance.enable", {})
    return driver


def renderer_cpu(driver: Any) -> float:
    """Seconds the page's renderer main thread has been busy with tasks so far (Chrome's
    ``TaskDuration``: wall time inside tasks, so it grows when the machine is oversubscribed)."""
    metrics = driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]
    return next(m["value"] for m in metrics if m["name"] == "TaskDuration")


def _drawn_at(driver: Any, key: str, timeout: float) -> float:
    """The page's clock (ms) when marker ``key`` entered the DOM; waits for it (polls every 50 ms)."""
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        t = driver.execute_script("return (window.__drawn || {})[arguments[0]]", key)
        if t is not None:
            return float(t)
        time.sleep(0.05)
    shown = driver.execute_script(
        'const e = document.querySelector(\'[data-testid="stException"], [data-testid="stAlert"]\');'
        "return e ? e.innerText.slice(0, 300) : null"
    )
    raise InterpError(
        f"page {key!r} was not drawn within {timeout} s" + (f"; the page shows: {shown}" if shown else "")
    )


def wait_drawn(driver: Any, key: str, timeout: float = 60) -> None:
    """Wait until the page with end marker ``key`` is drawn."""
    _drawn_at(driver, key, timeout)


def load_page(driver: Any, url: str, key: str, timeout: float = 60) -> float:
    """Navigate to ``url`` (a full load, new session) and return the seconds from the start of
    the navigation until page ``key`` is drawn."""
    driver.get(url)
    return _drawn_at(driver, key, timeout) / 1e3


def click_and_time(driver: Any, css: str, key: str, timeout: float = 60) -> float:
    """Click the element matching ``css`` (in-app navigation) and return the seconds until page
    ``key`` is drawn (measured by the page's own clock)."""
    el = driver.find_element("css selector", css)
    t0 = driver.execute_script(
        "delete window.__drawn[arguments[1]]; const t = performance.now(); arguments[0].click(); return t", el, key
    )
    return (_drawn_at(driver, key, timeout) - float(t0)) / 1e3


def open_steering(driver: Any, timeout: float = 60) -> None:
    """Switch the feature page's steering panel on and wait for its form."""
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout)
    toggle = wait.until(lambda d: d.find_elements("css selector", "div.st-key-steer_open label"))[0]
    toggle.click()  # a native click: react-aria ignores a scripted one
    wait.until(lambda d: d.find_elements("css selector", "div.st-key-steer_go button"))


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
        "return Math.max(m.scrollHeight, document.body.scrollHeight)"
    )
    driver.set_window_size(w, min(max(h + 120, 800), 6000))
    time.sleep(0.3)
    driver.save_screenshot(str(path))
    return Path(path)
