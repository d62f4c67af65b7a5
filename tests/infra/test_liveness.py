"""integration.liveness: telling, on this machine, that the process holding something has ended."""

from __future__ import annotations

import subprocess
import sys

import pytest

from integration import liveness
from integration.liveness import has_ended, this_process

pytestmark = pytest.mark.skipif(liveness._here() is None, reason="needs Linux's /proc to tell processes apart")


def name_of(pid: int) -> str:
    return liveness._name(pid)


def test_this_process_has_not_ended() -> None:
    assert not has_ended(this_process())


def test_a_running_process_has_not_ended_and_a_finished_one_has() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    name = name_of(child.pid)
    assert not has_ended(name)
    assert child.stdin is not None
    child.stdin.close()
    child.wait()
    assert has_ended(name)


def test_a_killed_process_not_yet_collected_has_ended() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    name = name_of(child.pid)
    child.kill()
    # Until wait() collects it, the child is a zombie: its pid still shows in /proc.
    for _ in range(200):
        if has_ended(name):
            break
        subprocess.run(["sleep", "0.01"], check=True)
    assert has_ended(name)
    child.wait()


def test_a_later_process_under_the_same_pid_is_not_the_holder() -> None:
    where, _, started = this_process().rpartition("/")
    earlier = f"{where}/{int(started) - 1}"  # this pid, as a process that started a tick before this one
    assert has_ended(earlier)


@pytest.mark.parametrize(
    "holder",
    [
        None,
        "",
        "not a process name",
        "another-boot-id/pid:[4026531836]/1/100",  # another machine, or before a reboot
        "{here_boot}/pid:[1]/1/100",  # another pid namespace (another container) on this machine
        "{here}/1/-",  # no start time known
        "{here}/x/100",
    ],
)
def test_what_cannot_be_told_from_here_is_never_judged_ended(holder: str | None) -> None:
    here = liveness._here()
    assert here is not None
    if holder:
        holder = holder.format(here=here, here_boot=here.partition("/")[0])
    assert not has_ended(holder)
