"""The benchmarks' CPU accounting (bench/cpu_use.py): a role's cores over a window, Redis found,
Redis commands per unit of work."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from bench.cpu_use import CpuMeter, per_unit, python_speed_ms, redis_server_pids


def test_a_busy_process_counts_its_cores_and_the_machine_its_share() -> None:
    meter = CpuMeter({"me": [os.getpid()], "gone": [2**22 + 7]})
    meter.start()
    # Spin until this process has used 0.2 s of CPU, whatever the wall time: on a shared machine
    # under a parallel suite a wall-clock window gets any share of a core.
    until = time.process_time() + 0.2
    while time.process_time() < until:
        pass
    cores = meter.stop()
    assert 0.15 <= meter.used["me"] < 0.5  # the CPU seconds it spent (the kernel counts in ticks)
    assert 0.0 < cores["me"] <= 1.2  # one thread: at most one core (some slack for rounding)
    assert cores["gone"] == 0.0
    assert 0.0 < cores["machine_busy_share"] <= 1.0
    assert 0.0 <= cores["machine_steal_share"] <= 1.0


def test_the_speed_figure_is_the_cpu_time_of_a_fixed_loop() -> None:
    first, second = python_speed_ms(), python_speed_ms()
    assert 10.0 < first < 10_000.0
    assert 0.25 < first / second < 4.0  # the same loop: the same order, whatever the noise


def test_the_redis_server_of_the_suite_is_found(redis_url: str) -> None:
    assert redis_server_pids(redis_url)


def test_commands_per_unit_are_the_calls_between_two_counts_most_called_first() -> None:
    before = {"get": 10, "evalsha": 4, "info": 1}
    after = {"get": 70, "evalsha": 24, "info": 2, "set": 30}  # `set` first seen after
    out = per_unit(before, after, 20)
    assert out == {"total": 5.55, "get": 3.0, "set": 1.5, "evalsha": 1.0, "info": 0.05}
    assert list(out)[1:] == ["get", "set", "evalsha", "info"]
    assert per_unit(before, before, 0) == {"total": 0.0}  # no work: nothing divided by zero


def _spinner() -> subprocess.Popen[bytes]:
    """A child that spends 0.3 s of CPU, then sleeps (alive: its time is not reaped yet)."""
    code = "import time\nu = time.process_time() + 0.3\nwhile time.process_time() < u: pass\ntime.sleep(30)"
    return subprocess.Popen([sys.executable, "-c", code])


def _spent(proc: subprocess.Popen[bytes]) -> None:
    child = psutil.Process(proc.pid)
    while sum(child.cpu_times()[:2]) < 0.3:
        time.sleep(0.02)


def test_a_live_child_counts_for_its_parent_unless_it_has_a_role_of_its_own() -> None:
    unclaimed = _spinner()
    try:
        meter = CpuMeter({"me": [os.getpid()]})
        meter.start()  # the child's start-up before this is outside the window
        _spent(unclaimed)
        meter.stop()
        assert meter.used["me"] >= 0.2  # a worker's walk process counts as its worker's
    finally:
        unclaimed.kill()
        unclaimed.wait()
    claimed = _spinner()
    try:
        meter = CpuMeter({"me": [os.getpid()], "kid": [claimed.pid]})
        meter.start()
        _spent(claimed)
        meter.stop()
        assert meter.used["kid"] >= 0.2 and meter.used["me"] < 0.15  # a sandbox counts for itself
    finally:
        claimed.kill()
        claimed.wait()
