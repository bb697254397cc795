"""What the benchmark ran on: CPU, cores, GPU, library versions, source commit."""
from __future__ import annotations

import os
import platform
import subprocess

import numpy as np

import nanocnn as nc


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def source_commit():
    """The git commit of the nanocnn source tree this runs from ("-dirty" if it has local
    changes outside bench/results), or None for an installed package outside a checkout."""
    here = os.path.dirname(os.path.abspath(nc.__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here,
                                capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        # Result files written by earlier runs do not make the code "dirty".
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ":/", ":(exclude,top)bench/results"],
                               cwd=here, capture_output=True, text=True, timeout=10).stdout
        return commit.stdout.strip() + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: str = "cpu") -> dict:
    import torch

    info = {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "nanocnn": nc.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "sgemm_isa": nc._C.sgemm_isa(),
        "commit": source_commit(),
    }
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(torch.device(device))
        info.update({"gpu": p.name, "gpu_memory_gib": round(p.total_memory / 2**30, 1),
                     "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
    return info
