"""This machine, asked without importing PyTorch: the memory still free, and whether a process runs."""

from __future__ import annotations

import os


def available_ram_bytes() -> int:
    """MemAvailable from /proc/meminfo (else the free pages), capped by a cgroup memory limit."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < avail:
            avail = int(text)
    return avail


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (under any user). Callers delete what a dead process
    left, so an unsure answer is True: outside POSIX, where ``os.kill`` would end the process instead of
    asking, every process counts as alive."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True
