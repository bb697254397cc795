"""How the benchmarks time things and check results (shared by the op and end-to-end benchmarks).

CPU: each call is timed alone with time.perf_counter; a measurement is the median over at least
``min_reps`` calls and ``min_time`` seconds, after a warm-up.

Rounds: the libraries are measured in turn, several rounds (``interleaved``), and each keeps its
lowest round median. Another program that takes a core for a moment stalls every parallel
region of a 2-thread run for a scheduler time slice (4 ms); interleaving spreads such a
disturbance over both libraries, and keeping the best round discards it, the same way for both.

GPU: calls are queued in groups long enough (~1 ms) that launching and synchronising cost
little, and the figure is the median per-call time over the groups. PyTorch's groups are timed
with CUDA events on its current stream; nanocnn's with perf_counter between two full-device
synchronisations (nanocnn.cuda_synchronize), which can only make nanocnn look slower, never
faster. Before each measurement all queued work of both libraries is finished.

Nothing is cached between repetitions: every call recomputes everything a real step would
(outputs and their memory included).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np


class MismatchError(AssertionError):
    """nanocnn and PyTorch disagree: the row is not timed."""


@dataclass
class Timing:
    seconds: float  # median seconds per call
    reps: int  # calls measured (not counting the warm-up)
    spread: float = 0.0  # (75th - 25th percentile) / median: how noisy the measurement was


def _timing(times: list, calls_per_time: int = 1) -> Timing:
    q1, median, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else times * 3
    return Timing(median, len(times) * calls_per_time, (q3 - q1) / median if median else 0.0)


def time_cpu(fn, min_time: float, min_reps: int, warmup: int = 3) -> Timing:
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 100_000:
            break
    return _timing(times)


def interleaved(measures: dict, rounds: int) -> dict:
    """Calls each of measures (name -> () -> Timing) once per round, in turn, `rounds` times;
    returns name -> the Timing with the lowest median (its reps: all rounds' together)."""
    results = {name: [] for name in measures}
    for _ in range(rounds):
        for name, measure in measures.items():
            results[name].append(measure())
    best = {}
    for name, timings in results.items():
        pick = min(timings, key=lambda t: t.seconds)
        best[name] = Timing(pick.seconds, sum(t.reps for t in timings), pick.spread)
    return best


def _sync_all():
    import torch

    import nanocnn as nc

    torch.cuda.synchronize()
    nc.cuda_synchronize()


def _group_size(fn, sync) -> int:
    """Calls per group so that a group takes about a millisecond (1 to 1000)."""
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    once = time.perf_counter() - t0
    return int(min(1000, max(1, 1e-3 / max(once, 1e-7))))


def time_gpu_torch(fn, min_time: float, min_reps: int, warmup: int = 3) -> Timing:
    """PyTorch on the GPU: CUDA events around groups of calls on the current stream."""
    import torch

    for _ in range(warmup):
        fn()
    _sync_all()
    group = _group_size(fn, torch.cuda.synchronize)
    times = []
    start_wall = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start_wall < min_time:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(group):
            fn()
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end) / 1e3 / group)
        if len(times) >= 10_000:
            break
    return _timing(times, group)


def time_gpu_nanocnn(fn, min_time: float, min_reps: int, warmup: int = 3) -> Timing:
    """nanocnn on the GPU: perf_counter between full-device synchronisations around groups."""
    import nanocnn as nc

    for _ in range(warmup):
        fn()
    _sync_all()
    group = _group_size(fn, nc.cuda_synchronize)
    times = []
    start_wall = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start_wall < min_time:
        nc.cuda_synchronize()
        t0 = time.perf_counter()
        for _ in range(group):
            fn()
        nc.cuda_synchronize()
        times.append((time.perf_counter() - t0) / group)
        if len(times) >= 10_000:
            break
    return _timing(times, group)


def quiet_padding_warning() -> None:
    """Silences PyTorch's warning that "same" padding with an even kernel (the CIFAR network's
    2x2) makes it pad a copy of the input: that copy is part of its cost and is timed; the
    warning is only noise in the table. Call inside warnings.catch_warnings()."""
    import warnings

    warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")


def set_tf32(enabled: bool) -> None:
    """Lets PyTorch use TF32 on the GPU for matmuls and cuDNN convolutions (on), or not (off:
    true FP32, what nanocnn computes). PyTorch's own defaults differ between the two."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def to_numpy(value) -> np.ndarray:
    """A float64 numpy copy of a nanocnn Tensor, torch tensor, numpy array or Python number."""
    if hasattr(value, "detach"):  # torch
        return value.detach().cpu().contiguous().double().numpy()
    if hasattr(value, "device") and hasattr(value, "to") and value.device != "cpu":  # nanocnn
        value = value.to("cpu")
    return np.array(value, dtype=np.float64)


def check_close(what: str, got, want, rtol: float, atol: float, magnitude=None) -> float:
    """Raises MismatchError unless |got - want| <= rtol |want| + atol * magnitude everywhere.

    ``magnitude``: a number, arrays like ``want`` (one magnitude per element), or None for
    max|want| (so atol suits any scale). Returns the largest absolute difference. Sizes must
    match exactly (after flattening lists of arrays).
    """
    got, want = _flat(got), _flat(want)
    if got.shape != want.shape:
        raise MismatchError(f"{what}: nanocnn gave {got.size} values, PyTorch {want.size}")
    if not np.all(np.isfinite(got)):
        raise MismatchError(f"{what}: nanocnn's result has non-finite values")
    scale = float(np.abs(want).max()) if want.size else 0.0
    if isinstance(magnitude, (list, tuple)):
        scale = _flat(magnitude)
    elif magnitude is not None:
        scale = float(magnitude)
    diff = np.abs(got - want)
    bound = rtol * np.abs(want) + atol * np.maximum(scale, np.finfo(np.float32).tiny)
    if np.any(diff > bound):
        worst = int(np.argmax(diff - bound))
        raise MismatchError(f"{what}: nanocnn and PyTorch disagree: element {worst} is "
                            f"{got[worst]:.6g} vs {want[worst]:.6g}, allowed difference "
                            f"{bound[worst]:.3g} (max abs diff {diff.max():.3g})")
    return float(diff.max()) if diff.size else 0.0


def _flat(values) -> np.ndarray:
    if isinstance(values, (list, tuple)):
        parts = [to_numpy(v).ravel() for v in values]
        return np.concatenate(parts) if parts else np.zeros(0)
    return to_numpy(values).ravel()
