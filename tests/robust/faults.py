"""Fault-injection harness: run a stage in a forked child, signal it at a chosen point, resume.

A *point* is the N-th line of ``interp`` code the child executes (counted by ``sys.settrace``), so a
fault lands at any line of the library (inside a checkpoint swap, a manifest write, a lock
release), not only at a time between steps. Faults: SIGKILL (nothing runs after it), SIGINT
(Ctrl-C), and SIGINT twice (a second Ctrl-C 0-20 ms after the first, from a timer thread: an
exception raised by the first switches line tracing off). The child is a fork of the test
process, so it starts in milliseconds with the model already loaded.

After the fault the stage is run again to completion in the test process. ``inject`` reports
what happened; the caller compares the result with an uninterrupted reference, bit for bit, and
checks that no finished work was done again (no silent restart).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import interp
from interp.errors import InterpError

LIBRARY = str(Path(interp.__file__).parent)


class LineCounter:
    """Counts executed lines of ``interp`` code; at line ``at`` sends ``sig`` to this process and,
    with ``again`` (seconds), a second SIGINT that much later from a timer thread."""

    def __init__(self, at: int | None = None, sig: int = signal.SIGINT, again: float | None = None):
        self.count, self.at, self.sig, self.again = 0, at, sig, again

    def _line(self, frame, event, arg):
        if event == "line":
            self.count += 1
            if self.count == self.at:
                if self.again is not None:
                    threading.Timer(self.again, os.kill, (os.getpid(), signal.SIGINT)).start()
                os.kill(os.getpid(), self.sig)  # a KeyboardInterrupt surfaces in the traced frame
        return self._line

    def _call(self, frame, event, arg):
        return self._line if frame.f_code.co_filename.startswith(LIBRARY) else None

    def run(self, fn: Callable[[], object]) -> None:
        sys.settrace(self._call)
        try:
            fn()
        finally:
            sys.settrace(None)


@dataclass
class Outcome:
    exit: str  # "killed", "interrupted", "finished", "error: <message>" or "crash: <traceback>"


def run_faulted(fn: Callable[[], object], fault: dict, report: Path) -> Outcome:
    """Run ``fn`` in a forked child that signals itself as ``fault`` says (see ``random_fault``)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            LineCounter(**fault).run(fn)
        except KeyboardInterrupt:
            code = 130
        except InterpError as e:
            report.write_text(f"{type(e).__name__}: {e}")
            code = 3
        except BaseException:
            report.write_text(traceback.format_exc())
            code = 1
        finally:
            try:  # a late second SIGINT must not let the child run on inside pytest
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                sys.stdout.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return Outcome("killed" if os.WTERMSIG(status) == signal.SIGKILL else f"signal {os.WTERMSIG(status)}")
    code = os.WEXITSTATUS(status)
    text = report.read_text() if report.exists() else ""
    return Outcome({0: "finished", 130: "interrupted", 3: f"error: {text}"}.get(code, f"crash ({code}): {text}"))


def count_lines(fn: Callable[[], object]) -> int:
    """Lines of ``interp`` code ``fn`` executes (run in this process)."""
    counter = LineCounter()
    counter.run(fn)
    return counter.count


def random_fault(rng, n_lines: int) -> dict:
    """One fault at a uniformly random line: SIGKILL, SIGINT, or SIGINT twice (0-20 ms apart)."""
    kind, at = ["kill", "int", "int2"][rng.integers(3)], int(rng.integers(1, n_lines + 1))
    if kind == "kill":
        return dict(at=at, sig=signal.SIGKILL)
    return dict(at=at, sig=signal.SIGINT, again=float(rng.uniform(0, 0.02)) if kind == "int2" else None)
