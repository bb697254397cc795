"""Per-op benchmark: every op of the seed networks, forward and backward, nanocnn against PyTorch.

For each op and direction both libraries get the same inputs, in the same process, with the same
thread count. Before anything is timed, nanocnn's result is checked against PyTorch's (every
PyTorch variant's); a mismatch stops the benchmark. PyTorch runs conv and pooling in NCHW and in
channels-last (often its faster layout on the CPU) and the ratio is taken against the faster one:

    ratio = PyTorch time (its faster layout) / nanocnn time      (> 1: nanocnn is faster)

PyTorch's backward is timed through autograd on a graph built once (torch.autograd.grad with
retain_graph=True): the real cost of its backward step, with whatever it saved in the forward
(pooling indices, say), while nanocnn's backward recomputes what it needs from the inputs. On the
GPU, PyTorch is also timed with TF32 allowed (conv and dense only; an extra column, not checked
for equality since TF32 rounds on purpose); the ratio itself is always FP32 against FP32.

Rates: conv and dense report GFLOP/s (2 FLOP per multiply-add; a backward pass counts dx and dw,
twice the forward), memory-bound ops GB/s (the bytes they must read and write at least). The
fraction of peak divides by the measured peak of the same threads (see peak.py): FMA throughput
for FLOP rates, copy bandwidth for byte rates. Small tensors live in the caches, so a
memory-bound op can exceed the copy bandwidth of main memory (fraction > 1).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

import nanocnn as nc
import nanocnn.functional as F

from . import networks
from .timing import (
    MismatchError, check_close, interleaved, quiet_padding_warning,
    set_tf32, time_cpu, time_gpu_nanocnn, time_gpu_torch)


@dataclass
class Case:
    suite: str  # "cifar" | "cats_vs_dogs" | "conv3x3" | a test's own
    batch: int
    name: str  # e.g. "conv1 3->16 2x2 same @32"
    op: str  # conv2d | max_pool2d | relu | linear | softmax_cross_entropy | sigmoid_bce
    args: dict = field(default_factory=dict)  # shapes (tuples) and options

    def elements(self) -> int:
        """Rough count of the floats the case allocates (for the "does it fit" check)."""
        a = self.args
        x = int(np.prod(a["x"]))
        if self.op == "conv2d":
            n, c, h, w = a["x"]
            k = a["w"][0]
            return 2 * x + 2 * n * k * h * w + 2 * int(np.prod(a["w"]))
        if self.op == "linear":
            return 2 * x + 2 * a["x"][0] * a["w"][0] + 2 * int(np.prod(a["w"]))
        return 3 * x


def network_cases(net: networks.Net, batch: int) -> list[Case]:
    """One case per op of `net`'s forward pass: conv, relu, pool, ..., dense, relu, dense, loss."""
    cases = []
    counts = {"conv": 0, "pool": 0, "dense": 0}
    for layer, shape_in, shape_out, last in networks.walk(net):
        if isinstance(layer, networks.Conv):
            counts["conv"] += 1
            i = counts["conv"]
            c, h, w = shape_in
            k = layer.kernel
            cases.append(Case(net.name, batch,
                              f"conv{i} {c}->{layer.filters} {k}x{k} {layer.padding} @{h}",
                              "conv2d", dict(x=(batch, c, h, w), w=(layer.filters, c, k, k),
                                             padding=layer.padding)))
            cases.append(Case(net.name, batch, f"relu{i} {shape_out}", "relu",
                              dict(x=(batch, *shape_out))))
        elif isinstance(layer, networks.Pool):
            counts["pool"] += 1
            c, h, w = shape_in
            cases.append(Case(net.name, batch, f"pool{counts['pool']} {layer.size}x{layer.size} "
                              f"@{h}", "max_pool2d",
                              dict(x=(batch, c, h, w), kernel_size=layer.size)))
        else:
            counts["dense"] += 1
            i = counts["dense"]
            cases.append(Case(net.name, batch, f"dense{i} {shape_in[0]}->{layer.units}", "linear",
                              dict(x=(batch, shape_in[0]), w=(layer.units, shape_in[0]))))
            if not last:
                cases.append(Case(net.name, batch, f"relu_d{i} ({layer.units},)", "relu",
                                  dict(x=(batch, layer.units))))
            elif net.loss == "softmax":
                cases.append(Case(net.name, batch, f"softmax+xent {layer.units}",
                                  "softmax_cross_entropy", dict(x=(batch, layer.units))))
            else:
                cases.append(Case(net.name, batch, f"sigmoid+bce {layer.units}", "sigmoid_bce",
                                  dict(x=(batch, layer.units))))
    return cases


# Common 3x3 layers of image classifiers (ResNet/VGG stages): (channels, image size).
CONV3X3_LAYERS = ((64, 56), (128, 28), (128, 16), (256, 14))


def conv3x3_cases(batch: int, layers=CONV3X3_LAYERS) -> list[Case]:
    return [Case("conv3x3", batch, f"conv {c}->{c} 3x3 same @{s}", "conv2d",
                 dict(x=(batch, c, s, s), w=(c, c, 3, 3), padding="same")) for c, s in layers]


def default_cases(batches=(1, 32, 256), quick: bool = False) -> list[Case]:
    """Full: both seed networks and the common 3x3 layers at every batch size.
    Quick (well under a minute in all): the CIFAR network at batch 32, the cats-vs-dogs network
    at batch 1, and one 3x3 layer at batch 1."""
    if quick:
        return (network_cases(networks.CIFAR, 32) + network_cases(networks.CATS_VS_DOGS, 1)
                + conv3x3_cases(1, layers=((128, 28),)))
    cases = []
    for batch in batches:
        cases += network_cases(networks.CIFAR, batch)
        cases += network_cases(networks.CATS_VS_DOGS, batch)
        cases += conv3x3_cases(batch)
    return cases


# ---- building the timed calls -------------------------------------------------------------------


@dataclass
class Row:
    """One timed line: a direction of one case, with nanocnn's call and PyTorch's variants."""
    direction: str  # "forward" | "backward" | "fwd+bwd"
    nanocnn: object  # () -> result
    torch: dict  # layout ("nchw" | "channels_last") -> () -> result
    compare: object  # (nanocnn result, torch result) -> [(label, nanocnn, torch, magnitude)]
    flops: float = 0.0  # for GFLOP/s (conv, dense)
    bytes: float = 0.0  # for GB/s (memory-bound ops)
    tf32: bool = False  # whether PyTorch's TF32 switch applies (conv, dense on a GPU)
    tol: tuple = (0.0, 0.0)  # (rtol, atol relative to the largest |value|) for check_close


# (rtol, atol) per op for the equality check. For conv and dense, atol multiplies each element's
# magnitude, the same sum taken over absolute values (the op applied to |x|, |w|, |b|, |dy|, as
# in tests/conftest.py): float32 rounding grows with it, and the gradient of a weight sums
# millions of terms at batch 256 (cats_vs_dogs conv1: 256 x 148 x 148), where both libraries'
# roundings reach 1e-5 of that magnitude while the result itself may be much smaller. Elsewhere
# atol multiplies max|expected|. The GPU's conv/dense get more room because cuDNN may pick
# Winograd or FFT algorithms, whose rounding differs more from a direct sum.
_TOL = {"conv2d": (1e-4, 2e-5), "linear": (1e-4, 2e-5), "max_pool2d": (0.0, 0.0),
        "max_pool2d_backward": (1e-6, 1e-7), "relu": (0.0, 0.0),
        "softmax_cross_entropy": (1e-5, 1e-6), "sigmoid_bce": (1e-5, 1e-6)}
_TOL_GPU = {"conv2d": (1e-3, 1e-4), "linear": (1e-3, 1e-4)}


def _outputs(r_n, r_t):
    """Compares all outputs (one array, or a tuple of gradients) at the default magnitude."""
    as_list = lambda r: list(r) if isinstance(r, (tuple, list)) else [r]  # noqa: E731
    return [("output", as_list(r_n), as_list(r_t), None)]


def _sums(magnitude):
    """Compares all outputs at the magnitude that magnitude() computes (once, then cached)."""
    cache = []

    def compare(r_n, r_t):
        if not cache:
            cache.append(magnitude())
        as_list = lambda r: list(r) if isinstance(r, (tuple, list)) else [r]  # noqa: E731
        return [("output", as_list(r_n), as_list(r_t), cache[0])]
    return compare


def _abs_op(op, inputs, dy=None):
    """The magnitudes of op(*inputs) (dy None) or of its gradients for dy: the same computation
    on absolute values, in PyTorch."""
    import torch

    absolute = [t.detach().abs().requires_grad_(dy is not None) for t in inputs]
    if dy is None:
        with torch.no_grad():
            return [op(*absolute)]
    return list(torch.autograd.grad(op(*absolute), absolute, dy.abs()))


def _loss_parts(max_logit: float):
    """Compares a fused loss: the scalar at magnitude max(|loss|, 1) * (1 + max|logit|) (it is a
    difference of terms as large as the largest logit, as in tests/conftest.py), the gradient
    element-wise at its own magnitude."""
    def compare(r_n, r_t):
        loss_t = float(r_t[0])
        return [("loss", [r_n[0]], [r_t[0]], max(abs(loss_t), 1.0) * (1.0 + max_logit)),
                ("dlogits", [r_n[1]], [r_t[1]], None)]
    return compare


def _tol(op: str, device: str):
    if device != "cpu" and op in _TOL_GPU:
        return _TOL_GPU[op]
    return _TOL[op]


def build_rows(case: Case, device: str, rng: np.random.Generator) -> list[Row]:
    """The rows of one case, with inputs made here (same values for both libraries)."""
    import torch
    import torch.nn.functional as TF

    CL = torch.channels_last
    a = case.args

    def both(array):  # the same values as a nanocnn tensor and a torch tensor
        return nc.tensor(array, device=device), torch.tensor(array, device=device)

    def normal(shape, scale=1.0):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))

    def leaf(t, layout=None):
        t = t.detach().clone() if layout is None else t.detach().to(memory_format=layout)
        return t.requires_grad_()

    rows = []
    if case.op == "conv2d":
        fan_in = int(np.prod(a["w"][1:]))
        x, w, b = normal(a["x"]), normal(a["w"], fan_in ** -0.5), normal(a["w"][0], 0.1)
        (xn, xt), (wn, wt), (bn, bt) = both(x), both(w), both(b)
        pad = a["padding"]
        conv = lambda x_, w_, b_: TF.conv2d(x_, w_, b_, padding=pad)  # noqa: E731
        xt, wt, bt = leaf(xt), leaf(wt), leaf(bt)
        xc, wc, bc = leaf(xt, CL), leaf(wt, CL), leaf(bt)
        yt, yc = TF.conv2d(xt, wt, bt, padding=pad), TF.conv2d(xc, wc, bc, padding=pad)
        dyn, dyt = both(normal(tuple(yt.shape)))
        dyc = dyt.to(memory_format=CL)
        n, k, p, q = yt.shape
        flops = 2.0 * n * k * p * q * int(np.prod(a["w"][1:]))
        tol = _tol("conv2d", device)
        rows.append(Row("forward", lambda: F.conv2d(xn, wn, bn, padding=pad),
                        {"nchw": lambda: TF.conv2d(xt.detach(), wt.detach(), bt.detach(),
                                                   padding=pad),
                         "channels_last": lambda: TF.conv2d(xc.detach(), wc.detach(),
                                                            bc.detach(), padding=pad)},
                        _sums(lambda: _abs_op(conv, (xt, wt, bt))), flops=flops, tf32=True,
                        tol=tol))
        rows.append(Row("backward", lambda: F.conv2d_backward(dyn, xn, wn, padding=pad),
                        {"nchw": lambda: torch.autograd.grad(yt, (xt, wt, bt), dyt,
                                                             retain_graph=True),
                         "channels_last": lambda: torch.autograd.grad(yc, (xc, wc, bc), dyc,
                                                                      retain_graph=True)},
                        _sums(lambda: _abs_op(conv, (xt, wt, bt), dyt)), flops=2 * flops,
                        tf32=True, tol=tol))
    elif case.op == "max_pool2d":
        k = a["kernel_size"]
        (xn, xt) = both(normal(a["x"]))
        xt = leaf(xt)
        xc = leaf(xt, CL)
        yt, yc = TF.max_pool2d(xt, k), TF.max_pool2d(xc, k)
        dyn, dyt = both(normal(tuple(yt.shape)))
        dyc = dyt.to(memory_format=CL)
        nx, ny = xt.numel(), yt.numel()
        rows.append(Row("forward", lambda: F.max_pool2d(xn, k),
                        {"nchw": lambda: TF.max_pool2d(xt.detach(), k),
                         "channels_last": lambda: TF.max_pool2d(xc.detach(), k)},
                        _outputs, bytes=4.0 * (nx + ny),
                        tol=_tol("max_pool2d", device)))
        rows.append(Row("backward", lambda: F.max_pool2d_backward(dyn, xn, k),
                        {"nchw": lambda: torch.autograd.grad(yt, xt, dyt, retain_graph=True),
                         "channels_last": lambda: torch.autograd.grad(yc, xc, dyc,
                                                                      retain_graph=True)},
                        _outputs, bytes=4.0 * (2 * nx + ny),
                        tol=_tol("max_pool2d_backward", device)))
    elif case.op == "relu":
        xn, xt = both(normal(a["x"]))
        xt = leaf(xt)
        yt, yn = TF.relu(xt), F.relu(xn)
        dyn, dyt = both(normal(a["x"]))
        n = xt.numel()
        tol = _tol("relu", device)
        rows.append(Row("forward", lambda: F.relu(xn), {"nchw": lambda: TF.relu(xt.detach())},
                        _outputs, bytes=8.0 * n, tol=tol))
        rows.append(Row("backward", lambda: F.relu_backward(dyn, yn),
                        {"nchw": lambda: torch.autograd.grad(yt, xt, dyt, retain_graph=True)},
                        _outputs, bytes=12.0 * n, tol=tol))
    elif case.op == "linear":
        x, w = normal(a["x"]), normal(a["w"], a["w"][1] ** -0.5)
        b = normal(a["w"][0], 0.1)
        (xn, xt), (wn, wt), (bn, bt) = both(x), both(w), both(b)
        xt, wt, bt = leaf(xt), leaf(wt), leaf(bt)
        yt = TF.linear(xt, wt, bt)
        dyn, dyt = both(normal(tuple(yt.shape)))
        flops = 2.0 * a["x"][0] * a["w"][0] * a["w"][1]
        tol = _tol("linear", device)
        rows.append(Row("forward", lambda: F.linear(xn, wn, bn),
                        {"nchw": lambda: TF.linear(xt.detach(), wt.detach(), bt.detach())},
                        _sums(lambda: _abs_op(TF.linear, (xt, wt, bt))), flops=flops, tf32=True,
                        tol=tol))
        rows.append(Row("backward", lambda: F.linear_backward(dyn, xn, wn),
                        {"nchw": lambda: torch.autograd.grad(yt, (xt, wt, bt), dyt,
                                                             retain_graph=True)},
                        _sums(lambda: _abs_op(TF.linear, (xt, wt, bt), dyt)), flops=2 * flops,
                        tf32=True, tol=tol))
    elif case.op == "softmax_cross_entropy":
        n, classes = a["x"]
        xn, xt = both(normal(a["x"], 3.0))
        labels = rng.integers(0, classes, n)
        lt = torch.tensor(labels, device=device)
        xt = leaf(xt)

        def torch_fused():  # the loss as a Python float, as nanocnn.functional returns it
            loss = TF.cross_entropy(xt, lt)
            (grad,) = torch.autograd.grad(loss, xt)
            return loss.item(), grad

        rows.append(Row("fwd+bwd", lambda: F.softmax_cross_entropy(xn, labels),
                        {"nchw": torch_fused}, _loss_parts(float(xt.detach().abs().max())),
                        bytes=8.0 * n * classes + 8.0 * n,
                        tol=_tol("softmax_cross_entropy", device)))
    elif case.op == "sigmoid_bce":
        xn, xt = both(normal(a["x"], 3.0))
        targets = (rng.random(a["x"]) < 0.5).astype(np.float32)
        tn, tt = both(targets)
        xt = leaf(xt)

        def torch_fused():
            loss = TF.binary_cross_entropy_with_logits(xt, tt)
            (grad,) = torch.autograd.grad(loss, xt)
            return loss.item(), grad

        rows.append(Row("fwd+bwd", lambda: F.sigmoid_binary_cross_entropy(xn, tn),
                        {"nchw": torch_fused}, _loss_parts(float(xt.detach().abs().max())),
                        bytes=12.0 * int(np.prod(a["x"])), tol=_tol("sigmoid_bce", device)))
    else:
        raise ValueError(f"unknown op {case.op!r}")
    return rows


# ---- measuring ----------------------------------------------------------------------------------


def check_row(what: str, row: Row) -> float:
    """Runs both libraries once and raises MismatchError unless nanocnn matches every PyTorch
    layout; returns the largest absolute difference."""
    worst = 0.0
    got = row.nanocnn()
    for layout, fn in row.torch.items():
        for label, mine, theirs, magnitude in row.compare(got, fn()):
            worst = max(worst, check_close(f"{what} {label} ({layout})", mine, theirs, *row.tol,
                                           magnitude=magnitude))
    return worst



def measure_row(case: Case, row: Row, config, peak: dict) -> dict:
    on_gpu = config.device != "cpu"
    what = f"{case.suite} b{case.batch} {case.name} {row.direction}"
    if on_gpu:
        set_tf32(False)
    max_diff = check_row(what, row)
    timer_nc = time_gpu_nanocnn if on_gpu else time_cpu
    timer_torch = time_gpu_torch if on_gpu else time_cpu
    per_round = config.min_time / config.rounds
    measures = {"nanocnn": lambda: timer_nc(row.nanocnn, per_round, config.min_reps)}
    for layout, fn in row.torch.items():
        measures[layout] = lambda fn=fn: timer_torch(fn, per_round, config.min_reps)
    timings = interleaved(measures, config.rounds)
    t_nc = timings.pop("nanocnn")
    t_torch = timings
    t_tf32 = None
    if on_gpu and row.tf32:
        set_tf32(True)
        t_tf32 = min(t.seconds for t in interleaved(
            {layout: lambda fn=fn: timer_torch(fn, per_round, config.min_reps)
             for layout, fn in row.torch.items()}, config.rounds).values())
        set_tf32(False)
    layout = min(t_torch, key=lambda k: t_torch[k].seconds)
    torch_s = t_torch[layout].seconds
    r = {"suite": case.suite, "batch": case.batch, "name": case.name, "op": case.op,
         "direction": row.direction, "args": {k: list(v) if isinstance(v, tuple) else v
                                              for k, v in case.args.items()},
         "nanocnn_s": t_nc.seconds, "torch_s": torch_s, "torch_layout": layout,
         "torch_nchw_s": t_torch["nchw"].seconds,
         "torch_channels_last_s": t_torch["channels_last"].seconds
         if "channels_last" in t_torch else None,
         "torch_tf32_s": t_tf32, "ratio": torch_s / t_nc.seconds,
         "ratio_tf32": t_tf32 / t_nc.seconds if t_tf32 else None,
         "flops": row.flops or None, "bytes": row.bytes or None,
         "nanocnn_reps": t_nc.reps, "torch_reps": t_torch[layout].reps,
         "nanocnn_spread": t_nc.spread, "torch_spread": t_torch[layout].spread,
         "max_abs_diff": max_diff, "tolerance": list(row.tol)}
    if row.flops:
        unit, amount, ceiling = "GFLOP/s", row.flops, peak.get("gflops")
    else:
        unit, amount, ceiling = "GB/s", row.bytes, peak.get("gbs")
    r["rate_unit"] = unit
    r["nanocnn_rate"] = amount / t_nc.seconds / 1e9
    r["torch_rate"] = amount / torch_s / 1e9
    r["nanocnn_peak_fraction"] = r["nanocnn_rate"] / ceiling if ceiling else None
    r["torch_peak_fraction"] = r["torch_rate"] / ceiling if ceiling else None
    return r


def available_bytes(device: str) -> int:
    if device != "cpu":
        import torch

        return torch.cuda.mem_get_info(torch.device(device))[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def run(config, peak: dict, cases=None, log=print) -> dict:
    """Measures every case (default_cases if None); returns {"rows", "skipped"}.

    `config` has device, min_time, min_reps, batches, quick. Raises MismatchError if nanocnn and
    PyTorch disagree anywhere (nothing is reported for a wrong result)."""
    if cases is None:
        cases = default_cases(config.batches, config.quick)
    rng = np.random.default_rng(0)
    rows, skipped = [], []
    budget = available_bytes(config.device) // 2
    with warnings.catch_warnings():
        quiet_padding_warning()
        for case in cases:
            _run_case(case, config, peak, rng, budget, rows, skipped, log)
    return {"rows": rows, "skipped": skipped}


def _run_case(case, config, peak, rng, budget, rows, skipped, log) -> None:
    # Each float lives in nanocnn, PyTorch NCHW and PyTorch channels-last, with gradients.
    need = 4 * 4 * case.elements()
    if need > budget:
        skipped.append({"suite": case.suite, "batch": case.batch, "name": case.name,
                        "reason": f"needs ~{need / 2**30:.1f} GiB, "
                                  f"{budget / 2**30:.1f} GiB allowed"})
        log(f"skipped {case.suite} b{case.batch} {case.name}: {skipped[-1]['reason']}")
        return
    for row in build_rows(case, config.device, rng):
        result = measure_row(case, row, config, peak)
        rows.append(result)
        log(result)


__all__ = ["Case", "Row", "MismatchError", "network_cases", "conv3x3_cases", "default_cases",
           "build_rows", "check_row", "measure_row", "run"]
