"""Serve the browser app on a loopback port (for the real-browser tests, the benchmark and the
load test): ``with serve(root) as url: ...`` starts the app as ``make browse`` does
(``apps/launch.py``) bound to 127.0.0.1 on a free port, waits for its health check, and stops it
on exit. Another Streamlit script (``app=``) is run with plain ``streamlit run``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from interp.errors import InterpError

APP = Path(__file__).resolve().parents[2] / "apps" / "browser.py"
LAUNCH = APP.with_name("launch.py")  # imports the data layer before serving (what `make browse` runs)


class Served(str):
    """The app's URL (a ``str``), with the server's process id (``pid``)."""

    pid: int


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise InterpError(f"streamlit exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read().strip() == b"ok":
                return
        except OSError:
            time.sleep(0.2)
    raise InterpError(f"the app did not come up at {url}")


@contextlib.contextmanager
def serve(
    root: str | Path, port: int | None = None, log: str | Path | None = None, app: str | Path = APP
) -> Iterator[Served]:
    """Run ``app`` (default: the browser) over ``root`` on ``127.0.0.1:port`` (a free one by
    default); yields its URL (with ``.pid``). Server output goes to ``log`` (default: discarded)."""
    port = port or free_port()
    env = {
        **os.environ,
        "INTERP_RUNS": str(root),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(APP.parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    out = open(log, "w") if log else subprocess.DEVNULL
    cmd = [sys.executable, str(LAUNCH)] if Path(app) == APP else [sys.executable, "-m", "streamlit", "run", str(app)]
    proc = subprocess.Popen(
        [
            *cmd,
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=APP.parents[1],
    )
    url = Served(f"http://127.0.0.1:{port}")
    url.pid = proc.pid
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log:
            out.close()
