"""Runs whose process is gone: a heartbeat tag on every run, and the next run closes the dead ones.

A process killed with SIGKILL (or a machine that lost power) cannot terminate its MLflow run,
which would stay RUNNING forever. So every run sparsecheck creates carries
``sparsecheck.heartbeat``: where the process runs (host, kernel boot and PID namespace), its pid
and start time, and the time of its last beat, renewed every :func:`heartbeat_interval` seconds
while the run is open. The next ``sparsecheck run`` or ``monitor`` that opens the same experiment
(:func:`close_abandoned_runs`, called by :func:`~.run_logging.start_run`) terminates as KILLED the
RUNNING runs whose heartbeat says

* the same host (same boot, same PID namespace) and a process that no longer exists (or whose pid
  now belongs to a process started at another time), or
* any host, and no beat for :func:`stale_after` seconds (an hour by default: a generous margin
  over the 30-second beat).

A run without the tag (not sparsecheck's, or older) and a run whose process is alive are never
touched. A closed run gets the tags ``sparsecheck.status = error`` and ``sparsecheck.closed``
saying why.

Examples
--------
>>> beat = parse_heartbeat(heartbeat_value())
>>> beat.pid == os.getpid(), process_alive(beat)
(True, True)
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparsecheck.tracking.tags import TAG_CLOSED, TAG_HEARTBEAT, TAG_STATUS

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

__all__ = ["TAG_HEARTBEAT", "TAG_CLOSED", "Heartbeat", "Beat", "heartbeat_value", "parse_heartbeat",
           "process_alive", "abandoned_reason", "close_abandoned_runs", "heartbeat_interval", "stale_after"]

#: environment variables that set the beat and the staleness margin (seconds)
HEARTBEAT_ENV, STALE_ENV = "SPARSECHECK_HEARTBEAT_S", "SPARSECHECK_HEARTBEAT_STALE_S"


def heartbeat_interval() -> float:
    """Seconds between beats: ``$SPARSECHECK_HEARTBEAT_S``, default 30."""
    return _env_seconds(HEARTBEAT_ENV, 30.0)


def stale_after() -> float:
    """Seconds without a beat after which any host's run counts as abandoned:
    ``$SPARSECHECK_HEARTBEAT_STALE_S``, default 3600."""
    return _env_seconds(STALE_ENV, 3600.0)


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        logger.warning("%s=%r is not a number of seconds; using %s", name, os.environ.get(name), default)
        return default
    return value if value > 0 else default


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _machine() -> str:
    """This process's host as a pid is meaningful on it: hostname, kernel boot and PID namespace
    (two containers with one hostname, or a reboot, are different machines here)."""
    boot = _read("/proc/sys/kernel/random/boot_id")[:8]
    try:
        pidns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pidns = ""
    return "/".join(p for p in (socket.gethostname(), boot, pidns) if p)


def _start_time(pid: int) -> str:
    """When ``pid`` started (clock ticks after boot, Linux), or "" where that cannot be read."""
    stat = _read(f"/proc/{pid}/stat")
    # the command name (field 2) may hold spaces and parentheses: split after its closing one
    fields = stat.rsplit(")", 1)[-1].split() if stat else []
    return fields[19] if len(fields) > 19 else ""


@dataclass(frozen=True)
class Beat:
    """A parsed ``sparsecheck.heartbeat`` tag."""

    machine: str
    pid: int
    started: str
    beat: float


def heartbeat_value(now: float | None = None) -> str:
    """The ``sparsecheck.heartbeat`` tag of this process, beating ``now``."""
    pid = os.getpid()
    return json.dumps({"machine": _machine(), "pid": pid, "started": _start_time(pid),
                       "beat": round(time.time() if now is None else now, 3)}, separators=(",", ":"))


def parse_heartbeat(value: str | None) -> Beat | None:
    """The tag's content, or None when it is missing or not a heartbeat."""
    if not value:
        return None
    try:
        doc = json.loads(value)
        return Beat(str(doc["machine"]), int(doc["pid"]), str(doc.get("started") or ""), float(doc["beat"]))
    except (ValueError, KeyError, TypeError):
        return None


def process_alive(beat: Beat) -> bool:
    """Whether the process that wrote ``beat`` still runs. Only meaningful on its own machine."""
    try:
        os.kill(beat.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    now_started = _start_time(beat.pid)
    return not (beat.started and now_started and now_started != beat.started)  # pid reused: another process


def abandoned_reason(beat: Beat | None, now: float | None = None) -> str | None:
    """Why the run whose heartbeat is ``beat`` is abandoned, or None when it may be alive."""
    if beat is None:
        return None
    now = time.time() if now is None else now
    if beat.machine == _machine() and not process_alive(beat):
        return f"its process {beat.pid} on this machine is gone"
    silent = now - beat.beat
    if silent > stale_after():
        return f"no heartbeat from process {beat.pid} on {beat.machine.split('/')[0]} for {silent / 60:.0f} min"
    return None


def close_abandoned_runs(client: "MlflowClient", experiment_id: str) -> list[str]:
    """Terminate as KILLED the RUNNING runs of ``experiment_id`` whose process is gone (see the
    module docstring); return their ids. Runs that may be alive are not touched; a failure to close
    one is logged and skipped (the next run tries again)."""
    try:
        runs = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'",
                                  max_results=1000)
    except Exception as exc:  # a store that cannot be searched: nothing to close now
        logger.debug("cannot look for abandoned runs in experiment %s: %s", experiment_id, exc)
        return []
    closed = []
    for run in runs:
        reason = abandoned_reason(parse_heartbeat(run.data.tags.get(TAG_HEARTBEAT)))
        if reason is None:
            continue
        try:
            client.set_tag(run.info.run_id, TAG_CLOSED, f"KILLED by a later sparsecheck run: {reason}")
            client.set_tag(run.info.run_id, TAG_STATUS, "error")
            client.set_terminated(run.info.run_id, status="KILLED")
        except Exception as exc:
            logger.debug("cannot close abandoned run %s: %s", run.info.run_id, exc)
            continue
        logger.warning("closed MLflow run %s as KILLED: %s", run.info.run_id, reason)
        closed.append(run.info.run_id)
    return closed


class Heartbeat:
    """Renews a run's ``sparsecheck.heartbeat`` tag every :func:`heartbeat_interval` seconds from a
    daemon thread, until :meth:`stop`. A failed beat is logged at DEBUG and tried again."""

    def __init__(self, client: "MlflowClient", run_id: str, interval: float | None = None) -> None:
        self.client = client
        self.run_id = run_id
        self.interval = heartbeat_interval() if interval is None else interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Heartbeat":
        self._thread = threading.Thread(target=self._beat, name=f"sparsecheck-heartbeat-{self.run_id[:8]}",
                                        daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.client.set_tag(self.run_id, TAG_HEARTBEAT, heartbeat_value())
            except Exception as exc:  # the store is busy or away: the next beat tries again
                logger.debug("heartbeat of run %s failed: %s", self.run_id, exc)

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(5.0, self.interval))

    def __repr__(self) -> str:
        return f"Heartbeat({self.run_id!r}, every {self.interval:g} s)"
