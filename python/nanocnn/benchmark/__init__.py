"""nanocnn.benchmark: nanocnn against PyTorch on this machine, op by op and end to end.

    nanocnn bench --quick                 # a taste, well under a minute
    nanocnn bench                         # everything: CPU at 1 and all threads, GPU if present
    nanocnn bench --only ops --threads 2 --out bench/results

Prints tables as it goes and writes, per device and thread count, JSON (every figure, plus the
machine and its measured peak), markdown and a PNG plot of the ratios into --out. Needs PyTorch
(``pip install "nanocnn[bench]"``). See bench/README.md for how to read the results.

Modules: ops (per op), train (end to end), networks (the seed networks), peak (the machine's
peak), machine (what it ran on), timing (timers and the equality check), report (output).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

_NEEDS_TORCH = ('nanocnn bench compares with PyTorch, which is not installed here; install it '
                'with  pip install "nanocnn[bench]"')


@dataclass
class Config:
    device: str = "cpu"
    min_time: float = 0.3  # seconds of timed calls per library and row (all rounds), at least
    min_reps: int = 5  # timed calls (GPU: groups of calls) per round, at least
    rounds: int = 3  # rounds of measurements, libraries in turn; each keeps its best round
    batches: tuple = (1, 32, 256)  # op benchmark
    train_batches: tuple = (32, 256)  # end-to-end benchmark
    quick: bool = False


def _ints(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv):
    from .machine import usable_cores

    cores = usable_cores()
    p = argparse.ArgumentParser(
        prog="nanocnn bench",
        description="Benchmark nanocnn against PyTorch on this machine: every op of the seed "
                    "networks forward and backward (ops), and training/inference end to end "
                    "(train). Ratio = PyTorch time / nanocnn time: above 1, nanocnn is faster.")
    p.add_argument("--quick", action="store_true",
                   help="a small subset with short timings (under a minute): the CIFAR network "
                        f"at batch 32 and more, on {cores} thread(s)")
    p.add_argument("--only", choices=("ops", "train"), help="run one of the two benchmarks")
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                   help="where to run (default: the CPU, and the GPU when nanocnn and PyTorch "
                        "can both use one)")
    default_threads = ",".join(str(t) for t in sorted({1, cores}))
    p.add_argument("--threads", type=_ints, default=None,
                   help=f"CPU thread counts, comma-separated (default: {default_threads}; "
                        f"quick: {cores})")
    p.add_argument("--batches", type=_ints, default=(1, 32, 256),
                   help="batch sizes of the op benchmark (default 1,32,256; --quick has its "
                        "own)")
    p.add_argument("--train-batches", type=_ints, default=(32, 256),
                   help="batch sizes of the end-to-end benchmark, besides each network's "
                        "tutorial batch size (CIFAR 64, cats-vs-dogs 20) (default 32,256; "
                        "--quick has its own)")
    p.add_argument("--min-time", type=float, default=None,
                   help="seconds of timed calls per library and row, at least, over all rounds "
                        "(default 0.3; quick 0.03)")
    p.add_argument("--min-reps", type=int, default=None,
                   help="timed repetitions per round, at least (default 5; quick 3)")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds of measurements, the libraries in turn; each keeps its fastest "
                        "round's median (default 3; quick 2)")
    p.add_argument("--out", default="nanocnn-bench-results",
                   help="folder for the JSON, markdown and PNG files (default: "
                        "./nanocnn-bench-results)")
    p.add_argument("--no-files", action="store_true", help="print the tables only")
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = (cores,) if args.quick else tuple(sorted({1, cores}))
    if args.min_time is None:
        args.min_time = 0.03 if args.quick else 0.3
    if args.min_reps is None:
        args.min_reps = 3 if args.quick else 5
    if args.rounds is None:
        args.rounds = 2 if args.quick else 3
    if args.rounds < 1 or args.min_reps < 1 or args.min_time < 0:
        p.error("--rounds and --min-reps must be >= 1, --min-time >= 0")
    return args


class _Printer:
    """Prints result rows as they come, with a heading whenever the network or batch changes."""

    def __init__(self, kind: str, gpu: bool):
        self.kind, self.gpu, self.group = kind, gpu, None

    def __call__(self, item):
        from . import report

        if isinstance(item, str):
            print(item, flush=True)
            return
        if self.kind == "ops":
            group = report.group_key(item)
            if group != self.group:
                print(f"\n{group[0]}, batch {group[1]}\n{report.ops_table_header(self.gpu)}")
                self.group = group
            print(report.ops_table_line(item, self.gpu), flush=True)
        else:
            if self.group is None:
                print(report.train_table_header())
                self.group = True
            print(report.train_table_line(item), flush=True)


def _load_average():
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this OS
        return None


def _note_noise(result: dict) -> None:
    """Records and prints how noisy the run was: rows whose timings spread (interquartile range)
    over 25% of the median on either side, and the load average before the run started."""
    noisy = [r for r in result["rows"]
             if max(r["nanocnn_spread"], r["torch_spread"]) > NOISY_SPREAD]
    result["noisy_rows"] = len(noisy)
    load = result.get("load_average_before")
    busy = load is not None and load > 0.5
    if noisy or busy:
        load_text = "unknown" if load is None else f"{load:.2f}"
        print(f"note: {len(noisy)} of {len(result['rows'])} rows had timings spread over "
              f"{NOISY_SPREAD:.0%} of their median (load average before the run: {load_text}). "
              "If other programs were using the CPU, rerun on a quiet machine.", flush=True)


# A measurement whose interquartile range exceeds this fraction of its median is flagged noisy.
NOISY_SPREAD = 0.25


def _files(out: str, stem: str):
    return {ext: os.path.join(out, f"{stem}.{ext}") for ext in ("json", "md", "png")}


def run_ops(config: Config, threads, args, cases=None) -> dict:
    """The op benchmark at one device and thread count: prints, returns the full result."""
    from . import machine, ops, peak, report

    gpu = config.device != "cpu"
    the_peak = peak.gpu_peak() if gpu else peak.cpu_peak(threads, 0.1 if config.quick else 0.2)
    result = {"benchmark": "ops", "device": config.device, "threads": None if gpu else threads,
              "quick": config.quick, "machine": machine.machine_info(config.device),
              "peak": the_peak,
              "config": {"min_time": config.min_time, "min_reps": config.min_reps,
                         "rounds": config.rounds},
              "load_average_before": _load_average()}
    print("\n" + report.run_header("ops", result), flush=True)
    started = time.perf_counter()
    result.update(ops.run(config, the_peak, cases=cases, log=_Printer("ops", gpu)))
    result["totals"] = report.ops_totals(result["rows"])
    result["seconds"] = time.perf_counter() - started
    print()
    for total in result["totals"]:
        print(report.ops_total_line(total))
    _note_noise(result)
    return result


def run_train(config: Config, thread_counts, cases=None) -> dict:
    from . import machine, peak, report, train

    import nanocnn as nc
    import torch

    gpu = config.device != "cpu"
    result = {"benchmark": "train", "device": config.device, "quick": config.quick,
              "machine": machine.machine_info(config.device),
              "peak": peak.gpu_peak() if gpu else peak.cpu_peak(max(thread_counts), 0.1),
              "config": {"min_time": config.min_time, "min_reps": config.min_reps,
                         "rounds": config.rounds},
              "rows": [], "skipped": [], "load_average_before": _load_average()}
    print("\n" + report.run_header("end to end", result), flush=True)
    printer = _Printer("train", gpu)
    started = time.perf_counter()
    for threads in ([None] if gpu else thread_counts):
        if threads:
            torch.set_num_threads(threads)
            nc.set_num_threads(threads)
        part = train.run(config, cases=cases, log=printer)
        result["rows"] += part["rows"]
        result["skipped"] += part["skipped"]
    result["seconds"] = time.perf_counter() - started
    _note_noise(result)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print(_NEEDS_TORCH, file=sys.stderr)
        return 2
    import nanocnn as nc

    from . import report
    from .timing import MismatchError

    devices = ["cpu"]
    gpu_ready = nc.cuda_available() and torch.cuda.is_available()
    if args.device == "cuda" or (args.device == "all" and gpu_ready):
        if not gpu_ready:
            print("nanocnn bench --device cuda: no GPU usable by both nanocnn and PyTorch here "
                  f"(nanocnn: {nc.cuda_available()}, PyTorch: {torch.cuda.is_available()})",
                  file=sys.stderr)
            return 2
        devices = ["cuda"] if args.device == "cuda" else ["cpu", "cuda"]
    if args.device == "cpu":
        devices = ["cpu"]
    if "cuda" in devices and not hasattr(nc, "cuda_synchronize"):
        print("nanocnn bench: this nanocnn has no nanocnn.cuda_synchronize, needed to time its "
              "GPU kernels" + ("" if args.device == "cuda" else "; benchmarking the CPU only"),
              file=sys.stderr)
        if args.device == "cuda":
            return 2
        devices = ["cpu"]
    if "cuda" in devices:
        torch.backends.cudnn.benchmark = True  # PyTorch picks its fastest conv algorithms

    suffix = "-quick" if args.quick else ""
    try:
        for device in devices:
            config = Config(device=device, min_time=args.min_time, min_reps=args.min_reps,
                            rounds=args.rounds, batches=args.batches,
                            train_batches=args.train_batches,
                            quick=args.quick)
            if args.only in (None, "ops"):
                for threads in ([None] if device != "cpu" else args.threads):
                    if threads:
                        torch.set_num_threads(threads)
                        nc.set_num_threads(threads)
                    result = run_ops(config, threads, args)
                    stem = f"ops-{device}" + (f"-{threads}t" if threads else "") + suffix
                    _write(args, stem, result, report.ops_markdown(result), plot=True)
            if args.only in (None, "train"):
                if not hasattr(nc, "Sequential"):
                    print("\nend-to-end benchmark skipped: this nanocnn has no model API "
                          "(nc.Sequential) yet", flush=True)
                    continue
                result = run_train(config, args.threads)
                _write(args, f"train-{device}{suffix}", result, report.train_markdown(result))
    except MismatchError as err:
        print(f"\nnanocnn bench: stopped, results differ, nothing timed for this row: {err}",
              file=sys.stderr)
        return 1
    return 0


def _write(args, stem: str, result: dict, markdown: str, plot: bool = False) -> None:
    from . import report

    if args.no_files:
        return
    paths = _files(args.out, stem)
    report.write_json(paths["json"], result)
    report.write_text(paths["md"], markdown)
    written = [paths["json"], paths["md"]]
    if plot and report.plot_ops(result, paths["png"]):
        written.append(paths["png"])
    print("wrote " + ", ".join(written), flush=True)
    if plot and len(written) == 2:
        print("(no PNG plot: it needs matplotlib, pip install matplotlib)", flush=True)


__all__ = ["main", "Config"]
