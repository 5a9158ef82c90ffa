"""What this machine offers jobs in local mode: CPUs, memory and NVIDIA GPUs, capped by settings.

The daemon reads it once at start (`offer`), checks submits against it and hands it to every worker
it starts (`to_environment`/`from_environment`), so a worker's claims count the same machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Mapping

from hyperbatch.config import LocalSettings
from hyperbatch.core.options import size_bytes
from hyperbatch.core.resources import Amount

NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")
ENV_CPUS, ENV_MEM, ENV_GPUS, ENV_STARVE = "HYPER_LOCAL_CPUS", "HYPER_LOCAL_MEM", "HYPER_LOCAL_GPUS", "HYPER_LOCAL_STARVE"


class Machine:
    """The capacity jobs share (`amount`), the GPUs by name, and how long a job may wait before it
    reserves the machine (hyperbatch.core.resources.pick)."""

    def __init__(self, amount: Amount, gpus: list[str], starve_after: float):
        self.amount, self.gpus, self.starve_after = amount, gpus, starve_after


def offer(settings: LocalSettings) -> Machine:
    """What jobs may use: `local.cpus`, else the CPUs this process may run on; MemTotal, capped by
    `local.mem`; `local.gpus`, else the NVIDIA GPUs found."""
    cpus = settings.cpu_count()
    mem = memory_bytes()
    if settings.mem:
        mem = min(mem, size_bytes(settings.mem)) if mem else size_bytes(settings.mem)
    gpus = list(settings.gpus) if settings.gpus is not None else nvidia_gpus()
    return Machine(Amount(cpus, mem, len(gpus)), gpus, settings.starve_after_seconds)


def memory_bytes() -> int:
    """MemTotal, else 0 (memory then goes uncounted)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def nvidia_gpus() -> list[str]:
    """The NVIDIA GPUs' indices ("0", "1", ...): `nvidia-smi -L`, else the driver's /proc entries."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
            found = re.findall(r"^GPU (\d+):", out, re.MULTILINE)
            if found:
                return found
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        return [str(i) for i in range(sum(1 for _ in NVIDIA_PROC.iterdir()))]
    except OSError:
        return []


def to_environment(machine: Machine) -> dict[str, str]:
    return {ENV_CPUS: str(machine.amount.cpus), ENV_MEM: str(machine.amount.mem),
            ENV_GPUS: ",".join(machine.gpus), ENV_STARVE: str(machine.starve_after)}


def from_environment(env: Mapping[str, str]) -> Machine | None:
    """The machine the daemon described to this worker; None outside a daemon's worker."""
    if ENV_CPUS not in env:
        return None
    gpus = [g for g in env.get(ENV_GPUS, "").split(",") if g]
    return Machine(Amount(int(env[ENV_CPUS]), int(env.get(ENV_MEM) or 0), len(gpus)), gpus,
                   float(env.get(ENV_STARVE) or 60))
