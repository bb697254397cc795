"""Per-op benchmark: nanocnn against PyTorch, side by side, in one process.

    python bench/ops.py                       # seed CIFAR network layers, batch 64, all threads
    python bench/ops.py --threads 1 --batch 1
    python bench/ops.py --json bench/results/ops-cpu.json --markdown bench/results/ops-cpu.md

For every op and direction, both libraries get the same inputs and the same thread count; the
outputs are checked equal (within the test tolerances) before anything is timed; each timing is
the median of many runs after a warm-up. PyTorch runs conv and pooling both in NCHW and in
channels-last (often its faster layout on the CPU); the ratio column is the faster PyTorch time
/ nanocnn time, so above 1 means nanocnn is faster. PyTorch backward passes are timed through autograd on a graph
built once (the real cost of a backward step in PyTorch, padding included).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as TF

import nanocnn as nc
import nanocnn.functional as F


@dataclass
class Case:
    name: str  # e.g. "conv1 3->16 2x2 same"
    op: str  # conv2d | max_pool2d | relu | linear | softmax_cross_entropy
    args: dict = field(default_factory=dict)


def cifar_cases(batch: int) -> list[Case]:
    """The layers of the seed CIFAR network (Keras example, 528,054 parameters)."""
    cases = []
    size, channels = 32, 3
    for i, filters in enumerate((16, 32, 64), start=1):
        x_shape = (batch, channels, size, size)
        cases.append(Case(f"conv{i} {channels}->{filters} 2x2 same @{size}", "conv2d",
                          dict(x=x_shape, w=(filters, channels, 2, 2), padding="same")))
        y_shape = (batch, filters, size, size)
        cases.append(Case(f"relu{i} {y_shape[1:]}", "relu", dict(x=y_shape)))
        cases.append(Case(f"pool{i} 2x2 @{size}", "max_pool2d", dict(x=y_shape, kernel_size=2)))
        size, channels = size // 2, filters
    cases.append(Case("dense1 1024->500", "linear", dict(x=(batch, 1024), w=(500, 1024))))
    cases.append(Case("dense2 500->10", "linear", dict(x=(batch, 500), w=(10, 500))))
    cases.append(Case("softmax+xent 10", "softmax_cross_entropy", dict(x=(batch, 10))))
    return cases


def median_seconds(fn, min_time: float = 0.2, min_reps: int = 10) -> float:
    """Median wall time of fn() after a warm-up, over at least min_reps runs and min_time s."""
    for _ in range(3):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 10000:
            break
    return statistics.median(times)


def conv_flops(x_shape, w_shape, out_shape) -> float:
    n, k, p, q = out_shape
    return 2.0 * n * k * p * q * w_shape[1] * w_shape[2] * w_shape[3]


CL = torch.channels_last


def build(case: Case, rng):
    """Returns [(direction, nanocnn_fn, torch_fn, torch_channels_last_fn, pair_fn, flops)] for one
    case. torch_channels_last_fn is None where the memory format does not apply; pair_fn turns
    the two results into arrays to compare."""
    a = case.args
    rows = []
    if case.op == "conv2d":
        x = rng.standard_normal(a["x"], dtype=np.float32)
        w = rng.standard_normal(a["w"], dtype=np.float32) * 0.1
        b = rng.standard_normal(a["w"][0], dtype=np.float32)
        xn, wn, bn = nc.tensor(x), nc.tensor(w), nc.tensor(b)
        xt = torch.tensor(x, requires_grad=True)
        wt = torch.tensor(w, requires_grad=True)
        bt = torch.tensor(b, requires_grad=True)
        pad = a["padding"]
        yt = TF.conv2d(xt, wt, bt, padding=pad)
        dy = rng.standard_normal(tuple(yt.shape), dtype=np.float32)
        dyn, dyt = nc.tensor(dy), torch.tensor(dy)
        flops = conv_flops(a["x"], a["w"], tuple(yt.shape))
        # The same in PyTorch's channels-last layout, often its faster one on the CPU.
        xc = xt.detach().to(memory_format=CL).requires_grad_()
        wc = wt.detach().to(memory_format=CL).requires_grad_()
        bc = bt.detach().clone().requires_grad_()
        yc = TF.conv2d(xc, wc, bc, padding=pad)
        dyc = dyt.to(memory_format=CL)
        rows.append(("forward", lambda: F.conv2d(xn, wn, bn, padding=pad),
                     lambda: TF.conv2d(xt.detach(), wt.detach(), bt.detach(), padding=pad),
                     lambda: TF.conv2d(xc.detach(), wc.detach(), bc.detach(), padding=pad),
                     lambda y_n, y_t: (y_n, y_t.contiguous().numpy()), flops))
        rows.append(("backward", lambda: F.conv2d_backward(dyn, xn, wn, padding=pad),
                     lambda: torch.autograd.grad(yt, (xt, wt, bt), dyt, retain_graph=True),
                     lambda: torch.autograd.grad(yc, (xc, wc, bc), dyc, retain_graph=True),
                     lambda g_n, g_t: (np.concatenate([np.asarray(g).ravel() for g in g_n]),
                                       np.concatenate([g.contiguous().numpy().ravel() for g in g_t])),
                     2 * flops))
    elif case.op == "max_pool2d":
        x = rng.standard_normal(a["x"], dtype=np.float32)
        k = a["kernel_size"]
        xn = nc.tensor(x)
        xt = torch.tensor(x, requires_grad=True)
        yt = TF.max_pool2d(xt, k)
        dy = rng.standard_normal(tuple(yt.shape), dtype=np.float32)
        dyn, dyt = nc.tensor(dy), torch.tensor(dy)
        xc = xt.detach().to(memory_format=CL).requires_grad_()
        yc = TF.max_pool2d(xc, k)
        dyc = dyt.to(memory_format=CL)
        rows.append(("forward", lambda: F.max_pool2d(xn, k), lambda: TF.max_pool2d(xt.detach(), k),
                     lambda: TF.max_pool2d(xc.detach(), k),
                     lambda y_n, y_t: (y_n, y_t.contiguous().numpy()), 0))
        rows.append(("backward", lambda: F.max_pool2d_backward(dyn, xn, k),
                     lambda: torch.autograd.grad(yt, xt, dyt, retain_graph=True),
                     lambda: torch.autograd.grad(yc, xc, dyc, retain_graph=True),
                     lambda g_n, g_t: (g_n, g_t[0].contiguous().numpy()), 0))
    elif case.op == "relu":
        x = rng.standard_normal(a["x"], dtype=np.float32)
        xn = nc.tensor(x)
        xt = torch.tensor(x, requires_grad=True)
        yt = TF.relu(xt)
        yn = F.relu(xn)
        dy = rng.standard_normal(a["x"], dtype=np.float32)
        dyn, dyt = nc.tensor(dy), torch.tensor(dy)
        rows.append(("forward", lambda: F.relu(xn), lambda: TF.relu(xt.detach()), None,
                     lambda y_n, y_t: (y_n, y_t.numpy()), 0))
        rows.append(("backward", lambda: F.relu_backward(dyn, yn),
                     lambda: torch.autograd.grad(yt, xt, dyt, retain_graph=True), None,
                     lambda g_n, g_t: (g_n, g_t[0].numpy()), 0))
    elif case.op == "linear":
        x = rng.standard_normal(a["x"], dtype=np.float32)
        w = rng.standard_normal(a["w"], dtype=np.float32) * 0.05
        b = rng.standard_normal(a["w"][0], dtype=np.float32)
        xn, wn, bn = nc.tensor(x), nc.tensor(w), nc.tensor(b)
        xt = torch.tensor(x, requires_grad=True)
        wt = torch.tensor(w, requires_grad=True)
        bt = torch.tensor(b, requires_grad=True)
        yt = TF.linear(xt, wt, bt)
        dy = rng.standard_normal(tuple(yt.shape), dtype=np.float32)
        dyn, dyt = nc.tensor(dy), torch.tensor(dy)
        flops = 2.0 * a["x"][0] * a["w"][0] * a["w"][1]
        rows.append(("forward", lambda: F.linear(xn, wn, bn),
                     lambda: TF.linear(xt.detach(), wt.detach(), bt.detach()), None,
                     lambda y_n, y_t: (y_n, y_t.numpy()), flops))
        rows.append(("backward", lambda: F.linear_backward(dyn, xn, wn),
                     lambda: torch.autograd.grad(yt, (xt, wt, bt), dyt, retain_graph=True), None,
                     lambda g_n, g_t: (np.concatenate([np.asarray(g).ravel() for g in g_n]),
                                       np.concatenate([g.numpy().ravel() for g in g_t])),
                     2 * flops))
    elif case.op == "softmax_cross_entropy":
        x = rng.standard_normal(a["x"], dtype=np.float32)
        labels = rng.integers(0, a["x"][1], a["x"][0])
        xn = nc.tensor(x)
        xt = torch.tensor(x, requires_grad=True)
        lt = torch.tensor(labels)

        def torch_fused():
            loss = TF.cross_entropy(xt, lt)
            (grad,) = torch.autograd.grad(loss, xt)
            return loss, grad

        rows.append(("fwd+bwd", lambda: F.softmax_cross_entropy(xn, labels), torch_fused, None,
                     lambda r_n, r_t: (np.append(np.asarray(r_n[1]).ravel(), r_n[0]),
                                       np.append(r_t[1].numpy().ravel(), r_t[0].item())), 0))
    return rows


def machine_info() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=os.path.dirname(__file__)).stdout.strip()
    except OSError:
        commit = ""
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "nanocnn": nc.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "sgemm_isa": nc._C.sgemm_isa(), "commit": commit}


def markdown_table(results: list[dict], machine: dict, batch: int, threads: int) -> str:
    lines = [
        f"nanocnn {machine['nanocnn']} vs PyTorch {machine['torch']} on {machine['cpu']} "
        f"({machine['cores']} cores), batch {batch}, {threads} thread(s), sgemm "
        f"{machine['sgemm_isa']}, commit {machine['commit'] or '?'}. PyTorch is timed in NCHW "
        "and, for conv and pooling, channels-last; ratio = the faster PyTorch time / nanocnn "
        "time (above 1: nanocnn faster).",
        "",
        "| op | direction | nanocnn ms | PyTorch NCHW ms | PyTorch channels-last ms | ratio | nanocnn GFLOP/s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        gflops = "" if r["nanocnn_gflops"] is None else f"{r['nanocnn_gflops']:.0f}"
        cl = "" if r["torch_channels_last_s"] is None else f"{r['torch_channels_last_s'] * 1e3:.3f}"
        lines.append(f"| {r['name']} | {r['direction']} | {r['nanocnn_s'] * 1e3:.3f} | "
                     f"{r['torch_nchw_s'] * 1e3:.3f} | {cl} | {r['ratio']:.2f} | {gflops} |")
    total_nc = sum(r["nanocnn_s"] for r in results)
    total_torch = sum(r["torch_s"] for r in results)
    lines.append(f"| **all ops** (PyTorch: the faster layout per row) | | **{total_nc * 1e3:.3f}** | | "
                 f"**{total_torch * 1e3:.3f}** | **{total_torch / total_nc:.2f}** | |")
    return "\n".join(lines) + "\n"


def write_atomically(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per timing")
    parser.add_argument("--json", help="write every figure to this JSON file")
    parser.add_argument("--markdown", help="write the table to this markdown file")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    nc.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    results = []
    header = (f"{'op':<28} {'dir':<9} {'nanocnn ms':>10} {'torch ms':>9} {'torch CL':>9} "
              f"{'ratio':>6} {'GFLOP/s':>8}")
    print(f"nanocnn {nc.__version__} vs torch {torch.__version__}, batch {args.batch}, "
          f"{args.threads} thread(s), sgemm {nc._C.sgemm_isa()}")
    print(header)
    print("-" * len(header))
    for case in cifar_cases(args.batch):
        for direction, nc_fn, torch_fn, torch_cl_fn, pair, flops in build(case, rng):
            for reference in [torch_fn] + ([torch_cl_fn] if torch_cl_fn else []):
                got, want = pair(nc_fn(), reference())
                got, want = np.asarray(got), np.asarray(want)
                scale = float(np.abs(want).max()) or 1.0
                if not np.allclose(got, want, rtol=1e-4, atol=1e-5 * scale):
                    print(f"{case.name}: {direction}: nanocnn and torch disagree (max abs diff "
                          f"{np.abs(got - want).max():.3g}); not timed", file=sys.stderr)
                    return 1
            t_nc = median_seconds(nc_fn, args.min_time)
            t_nchw = median_seconds(torch_fn, args.min_time)
            t_cl = median_seconds(torch_cl_fn, args.min_time) if torch_cl_fn else None
            t_torch = min(t_nchw, t_cl) if t_cl else t_nchw
            gflops = flops / t_nc / 1e9 if flops else None
            results.append({"op": case.op, "name": case.name, "direction": direction,
                            "args": case.args, "nanocnn_s": t_nc, "torch_nchw_s": t_nchw,
                            "torch_channels_last_s": t_cl, "torch_s": t_torch,
                            "ratio": t_torch / t_nc, "flops": flops, "nanocnn_gflops": gflops})
            cl = f"{t_cl * 1e3:>9.3f}" if t_cl else f"{'':>9}"
            print(f"{case.name:<28} {direction:<9} {t_nc * 1e3:>10.3f} {t_nchw * 1e3:>9.3f} {cl} "
                  f"{t_torch / t_nc:>6.2f} {'' if gflops is None else f'{gflops:8.1f}'}")
    total_nc = sum(r["nanocnn_s"] for r in results)
    total_torch = sum(r["torch_s"] for r in results)
    print(f"{'all ops (torch: faster layout)':<38} {total_nc * 1e3:>10.3f} "
          f"{total_torch * 1e3:>9.3f} {'':>9} {total_torch / total_nc:>6.2f}")
    machine = machine_info()
    if args.json:
        payload = {"machine": machine, "batch": args.batch, "threads": args.threads,
                   "results": results}
        write_atomically(args.json, json.dumps(payload, indent=1) + "\n")
    if args.markdown:
        write_atomically(args.markdown, markdown_table(results, machine, args.batch, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
