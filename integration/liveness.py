"""Which process holds a delivery or a ticket lock, and whether that process has ended.

A worker killed mid-job (SIGKILL, a crash) leaves deliveries in processing and ticket
locks held. Both carry a lease, after which any worker takes them over; but a worker
restarted beside the dead one can tell at once that it has ended, and need not wait for
the lease. On Linux a process is named by the kernel's boot id, its pid namespace, its pid
and its start time: a later process under the same pid starts later, and a process is
looked up in /proc only by one that sees the same pids (same boot, same pid namespace).

A holder on another machine or in another container, one from before a reboot, or any on
a system without /proc, is never judged ended: its lease decides.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

_PROC = Path("/proc")


def this_process() -> str:
    """This process's name for what it holds: boot id, pid namespace, pid and start time."""
    return _name(os.getpid())


@functools.cache
def _name(pid: int) -> str:  # per pid: a forked child (a gunicorn worker) names itself anew
    return "/".join([_here() or "-", str(pid), _start_time(pid) or "-"])


def has_ended(holder: str | None) -> bool:
    """Whether the process `holder` names (see this_process) has certainly ended; False when it cannot be told."""
    if not holder:
        return False
    parts = holder.rsplit("/", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    where, pid, started = parts
    mine = _here()
    if mine is None or where != mine or started == "-":
        return False  # seen from elsewhere (another machine, container or boot): only its lease can tell
    return _start_time(int(pid)) != started  # no such process now, or a later one under that pid


@functools.cache
def _here() -> str | None:
    """Boot id and pid namespace: where a pid means the same process as it does to this one."""
    try:
        boot = (_PROC / "sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink(_PROC / "self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return None
    return f"{boot}/{namespace}" if boot and namespace else None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None once it has ended."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None  # a zombie has ended; only its parent has not collected it yet
    return fields[19]
