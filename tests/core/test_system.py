"""This machine: free memory, capped by a cgroup limit, and whether a process is alive."""

import io

from biounet.core import system


def test_available_memory_is_positive_and_at_most_the_total():
    total = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    assert 0 < system.available_ram_bytes() <= total


def test_a_cgroup_limit_below_the_free_memory_caps_it(monkeypatch):
    real_open = open

    def fake_open(path, *args, **kwargs):
        if path == "/sys/fs/cgroup/memory.max":
            return io.StringIO("1048576\n")  # a container limited to 1 MiB
        if path == "/sys/fs/cgroup/memory/memory.limit_in_bytes":
            raise OSError("no cgroup v1 here")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(system, "open", fake_open, raising=False)
    assert system.available_ram_bytes() == 1048576


def test_an_unlimited_cgroup_changes_nothing(monkeypatch):
    real_open = open
    free = system.available_ram_bytes()

    def fake_open(path, *args, **kwargs):
        if path.startswith("/sys/fs/cgroup/"):
            return io.StringIO("max\n")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(system, "open", fake_open, raising=False)
    assert abs(system.available_ram_bytes() - free) < 256 * 2**20  # the same, give or take other processes


def test_a_process_is_alive_until_it_has_ended_and_been_reaped():
    import os
    import subprocess
    import sys

    assert system.process_alive(os.getpid()) and system.process_alive(os.getppid())
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    assert not system.process_alive(ended.pid)


def test_another_users_process_is_alive_and_outside_posix_every_one_is(monkeypatch):
    def not_permitted(pid, signal):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(system.os, "kill", not_permitted)
    assert system.process_alive(1)

    def must_not_be_called(pid, signal):  # on Windows os.kill ends the process instead of asking
        raise AssertionError("os.kill called outside POSIX")

    monkeypatch.setattr(system.os, "kill", must_not_be_called)
    monkeypatch.setattr(system.os, "name", "nt")
    assert system.process_alive(12345)
