"""The machine's peak, measured or read from the device, for the "fraction of peak" columns.

CPU: ``nanocnn._C.cpu_peak_gflops`` runs independent FP32 FMA chains on every thread at once
(csrc/cpu/peak.cpp) and ``nanocnn._C.cpu_copy_gbs`` streams y = x + 1 over 256 MiB arrays; each
is the best of a few measurements spread over a second or two: on a shared (virtual) machine a
thread is now and then held off its core for a fraction of a second, which halves a single
measurement of two threads (seen: 117 instead of 232 GFLOP/s, three times in a row). Nothing here
trusts a datasheet.

GPU: the device's own figures: SMs x FP32 lanes per SM (from the compute capability) x 2 FLOP
per FMA x the maximum SM clock, and 2 x memory clock x bus width for the bandwidth, as the driver
reports them through ``torch.cuda.get_device_properties`` (nvidia-smi as a fallback for the
clock). These are the ceilings the hardware cannot exceed; sustained clocks may be lower.
"""
from __future__ import annotations

import shutil
import subprocess
import time

import nanocnn as nc

# FP32 FMA lanes ("CUDA cores") per SM, by compute capability major (minor where it differs).
_FP32_LANES_PER_SM = {(6, 0): 64, 6: 128, 7: 64, (8, 0): 64, 8: 128, 9: 128, 10: 128, 11: 128,
                      12: 128}


def _best(measure, repeats: int, gap: float) -> float:
    best = 0.0
    for i in range(repeats):
        if i:
            time.sleep(gap)
        best = max(best, measure())
    return best


def cpu_peak(threads: int, seconds: float = 0.2, repeats: int = 5, gap: float = 0.2,
             nbytes: int = 256 << 20) -> dict:
    """Measured FP32 FMA GFLOP/s and copy GB/s (over arrays of `nbytes`) of `threads` threads
    running at once, each the best of `repeats` measurements of about `seconds`, `gap` seconds
    apart."""
    gflops = _best(lambda: nc._C.cpu_peak_gflops(threads, seconds), repeats, gap)
    gbs = _best(lambda: nc._C.cpu_copy_gbs(threads, nbytes, seconds), repeats, gap)
    return {"device": "cpu", "threads": threads, "gflops": gflops, "gbs": gbs,
            "isa": nc._C.cpu_peak_isa(),
            "how": f"measured: FP32 FMA chains on {threads} thread(s) at once "
                   f"({nc._C.cpu_peak_isa()}), and y = x + 1 over {nbytes >> 20} MiB (read + write "
                   f"bytes); "
                   f"best of {repeats}"}


def _nvidia_smi_max_sm_clock_mhz(index: int):
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "-i", str(index), "--query-gpu=clocks.max.sm",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=20).stdout.strip()
        return float(out.splitlines()[0])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def gpu_peak(index: int = 0) -> dict:
    """The GPU's FP32 FMA peak and memory bandwidth from the driver's figures."""
    import torch

    p = torch.cuda.get_device_properties(index)
    lanes = _FP32_LANES_PER_SM.get((p.major, p.minor), _FP32_LANES_PER_SM.get(p.major))
    clock_mhz = getattr(p, "clock_rate", 0) / 1e3 or _nvidia_smi_max_sm_clock_mhz(index)
    gflops = None
    if lanes and clock_mhz:
        gflops = p.multi_processor_count * lanes * 2 * clock_mhz / 1e3
    gbs = None
    mem_khz, bus_bits = getattr(p, "memory_clock_rate", 0), getattr(p, "memory_bus_width", 0)
    if mem_khz and bus_bits:
        gbs = 2 * mem_khz * 1e3 * bus_bits / 8 / 1e9
    return {"device": f"cuda:{index}", "name": p.name, "gflops": gflops, "gbs": gbs,
            "sm_count": p.multi_processor_count, "fp32_lanes_per_sm": lanes,
            "sm_clock_mhz": clock_mhz, "compute_capability": f"{p.major}.{p.minor}",
            "how": "device figures: SMs x FP32 lanes/SM x 2 x max SM clock; "
                   "2 x memory clock x bus width"}
