"""End-to-end benchmark: the same network in nanocnn and in PyTorch, from the same weights.

For each seed network (networks.py) and batch size: one training step (forward, loss, backward,
SGD update) and inference (forward with the final softmax/sigmoid), in images per second.

Both libraries start every step from the same numpy batch of channels-last images, as a Keras
user's data arrives: nanocnn's model takes it as it is (``train_on_batch``/``predict_on_batch``;
it converts at its input), PyTorch gets ``torch.from_numpy(x).permute(0, 3, 1, 2)`` made
contiguous in the layout of the model timed (NCHW, or channels-last, which is that permutation as
it stands). Each step returns its loss as a Python float (Keras's train_on_batch does), and
inference returns numpy probabilities, in both libraries. The optimizer is plain SGD (learning
rate 0.01), identical in both.

Before timing: nanocnn's predictions, its loss and its updated weights after one step are checked
against every PyTorch variant's. Then each library keeps training on the batch (its weights
change every step, as in real training).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

import nanocnn as nc

from . import networks
from .timing import (
    MismatchError, check_close, interleaved, quiet_padding_warning,
    set_tf32, time_cpu, time_gpu_nanocnn, time_gpu_torch)

LEARNING_RATE = 0.01


def torch_model(net: networks.Net):
    """The PyTorch module equal to `net` (outputs logits; the loss applies softmax/sigmoid)."""
    import torch.nn as tnn

    modules = []
    flattened = False
    for layer, shape_in, _, last in networks.walk(net):
        if isinstance(layer, networks.Conv):
            modules += [tnn.Conv2d(shape_in[0], layer.filters, layer.kernel,
                                   padding=layer.padding), tnn.ReLU()]
        elif isinstance(layer, networks.Pool):
            modules.append(tnn.MaxPool2d(layer.size))
        else:
            if not flattened:
                modules.append(tnn.Flatten())
                flattened = True
            modules.append(tnn.Linear(shape_in[0], layer.units))
            if not last:
                modules.append(tnn.ReLU())
    return tnn.Sequential(*modules)


def nanocnn_model(net: networks.Net, device: str):
    """The same network with nanocnn's Keras-style API (channels-last input, like Keras)."""
    L = nc.layers
    c, h, w = net.input_chw
    layers = []
    flattened = False
    for layer, _, _, last in networks.walk(net):
        extra = {"input_shape": (h, w, c)} if not layers else {}
        if isinstance(layer, networks.Conv):
            layers.append(L.Conv2D(layer.filters, layer.kernel, padding=layer.padding,
                                   activation="relu", **extra))
        elif isinstance(layer, networks.Pool):
            layers.append(L.MaxPooling2D(layer.size))
        else:
            if not flattened:
                layers.append(L.Flatten())
                flattened = True
            activation = ("softmax" if net.loss == "softmax" else "sigmoid") if last else "relu"
            layers.append(L.Dense(layer.units, activation=activation))
    model = nc.Sequential(layers)
    loss = ("sparse_categorical_crossentropy" if net.loss == "softmax"
            else "binary_crossentropy")
    model.compile(optimizer=nc.optimizers.SGD(learning_rate=LEARNING_RATE), loss=loss)
    if device != "cpu":
        model.to(device)
    return model


class TorchRunner:
    """A PyTorch model in one memory layout, with its optimizer and Keras-like step functions."""

    def __init__(self, net: networks.Net, weights: list, device: str, layout: str):
        import torch

        self.torch = torch
        self.net = net
        self.device = device
        self.layout = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        self.model = torch_model(net).to(device)
        with torch.no_grad():
            for p, w in zip(self.model.parameters(), weights):
                p.copy_(torch.from_numpy(w))
        self.model = self.model.to(memory_format=self.layout)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE)
        if net.loss == "softmax":
            self.loss = torch.nn.CrossEntropyLoss()
        else:
            self.loss = torch.nn.BCEWithLogitsLoss()

    def _images(self, x):
        t = self.torch.from_numpy(x).to(self.device).permute(0, 3, 1, 2)
        return t.contiguous(memory_format=self.layout)

    def _labels(self, y):
        t = self.torch.from_numpy(y).to(self.device)
        return t.long() if self.net.loss == "softmax" else t.float()

    def train_on_batch(self, x, y) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.model(self._images(x)), self._labels(y))
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def predict_on_batch(self, x):
        with self.torch.inference_mode():
            logits = self.model(self._images(x))
            probs = logits.softmax(1) if self.net.loss == "softmax" else logits.sigmoid()
            return probs.cpu().numpy()

    def weights(self) -> list:
        return [p.detach().cpu().numpy() for p in self.model.parameters()]


def make_batch(net: networks.Net, batch: int, rng: np.random.Generator):
    c, h, w = net.input_chw
    x = rng.random((batch, h, w, c), dtype=np.float32)  # pixel values scaled to [0, 1)
    if net.loss == "softmax":
        y = rng.integers(0, net.classes, batch).astype(np.int64)
    else:
        y = (rng.random((batch, 1)) < 0.5).astype(np.float32)
    return x, y


def _first(value) -> float:
    """train_on_batch's loss: a float, or the first of [loss, metrics...]."""
    return float(np.atleast_1d(np.asarray(value, dtype=np.float64))[0])


def check_models(what: str, model, runners: dict, weights: list, x, y) -> float:
    """nanocnn's predictions, the loss of one training step and the update it makes to every
    weight tensor must agree with every PyTorch variant's (all start from `weights`); raises
    MismatchError otherwise. Returns the largest absolute difference.

    The updates (weights after - before) are compared tensor by tensor as a whole: the norm of
    the difference must stay within 1e-2 of the norm of PyTorch's update (plus 4 float32
    roundings of the weights, below which an update small against its weight is not known).
    Not element by element, and not tighter: float32 rounding differences of ~1e-7 flip the odd
    ReLU whose input is within that of zero, or the odd max-pooling tie, and a flip moves single
    elements of a deep layer's gradient by a few percent of the largest one, as legitimately on
    one side as on the other; a bias gradient that sums 37,000 values of either sign (the
    cats-vs-dogs network's third conv at batch 32) cancels to ~1e-3 of its terms, where such
    differences reach 1.5e-3 of the update. A wrong gradient is off by far more; the ops
    themselves are checked to float32 rounding by the test suite."""
    eps32 = float(np.finfo(np.float32).eps)
    worst = 0.0
    got = model.predict_on_batch(x)
    for layout, runner in runners.items():
        worst = max(worst, check_close(f"{what} predict ({layout})", got,
                                       runner.predict_on_batch(x), 1e-4, 1e-5))
    loss = _first(model.train_on_batch(x, y))
    updates = [np.asarray(after, np.float64) - before
               for after, before in zip(model.get_weights(), weights)]
    for layout, runner in runners.items():
        worst = max(worst, check_close(f"{what} loss ({layout})", [loss],
                                       [runner.train_on_batch(x, y)], 1e-4, 1e-6))
        for i, (mine, after, before) in enumerate(zip(updates, runner.weights(), weights)):
            theirs = after.astype(np.float64) - before
            error = np.linalg.norm(mine - theirs)
            bound = 1e-2 * np.linalg.norm(theirs) + 4 * eps32 * np.linalg.norm(before)
            if not error <= bound:
                raise MismatchError(
                    f"{what} update of weight tensor {i} ({layout}): nanocnn and PyTorch "
                    f"disagree: |difference| = {error:.3g} against |update| = "
                    f"{np.linalg.norm(theirs):.3g} (allowed {bound:.3g})")
            worst = max(worst, float(np.abs(mine - theirs).max()))
    return worst


@dataclass
class TrainCase:
    net: networks.Net
    batch: int


def default_cases(batches=(32, 256), quick: bool = False) -> list:
    """Each seed network at its tutorial's batch size (CIFAR 64, cats-vs-dogs 20: the sizes the
    speed targets are stated at) and at each of ``batches``."""
    if quick:
        return [TrainCase(networks.CIFAR, 32)]
    return [TrainCase(net, b) for net in (networks.CIFAR, networks.CATS_VS_DOGS)
            for b in sorted({net.seed_batch, *batches})]


def _activation_floats(net: networks.Net) -> int:
    total = int(np.prod(net.input_chw))
    for layer, _, shape_out, _ in networks.walk(net):
        total += int(np.prod(shape_out)) * (2 if isinstance(layer, networks.Conv) else 1)
    return total


def run(config, cases=None, log=print) -> dict:
    """Times every case at config.device (with whatever thread count is set); returns
    {"rows", "skipped"}. Raises MismatchError if the libraries disagree."""
    if not hasattr(nc, "Sequential"):
        raise RuntimeError("the end-to-end benchmark needs nanocnn's model API (nc.Sequential), "
                           "which this build of nanocnn does not have")
    if cases is None:
        cases = default_cases(config.train_batches, config.quick)
    on_gpu = config.device != "cpu"
    timer_nc = time_gpu_nanocnn if on_gpu else time_cpu
    timer_torch = time_gpu_torch if on_gpu else time_cpu
    threads = None if on_gpu else nc.get_num_threads()
    rng = np.random.default_rng(0)
    rows, skipped = [], []
    with warnings.catch_warnings():
        quiet_padding_warning()
        for case in cases:
            _run_case(case, config, timer_nc, timer_torch, threads, rng, rows, skipped, log)
    return {"rows": rows, "skipped": skipped}


def _run_case(case, config, timer_nc, timer_torch, threads, rng, rows, skipped, log) -> None:
    import torch

    from .ops import available_bytes

    on_gpu = config.device != "cpu"
    net, batch = case.net, case.batch
    # Activations and their gradients, for 3 models (nanocnn, PyTorch in 2 layouts).
    need = 3 * 3 * 4 * batch * _activation_floats(net)
    if need > available_bytes(config.device) // 2:
        skipped.append({"network": net.name, "batch": batch,
                        "reason": f"needs ~{need / 2**30:.1f} GiB"})
        log(f"skipped {net.name} batch {batch}: {skipped[-1]['reason']}")
        return
    torch.manual_seed(0)
    weights = [p.detach().numpy().copy() for p in torch_model(net).parameters()]
    if on_gpu:
        set_tf32(False)
    runners = {layout: TorchRunner(net, weights, config.device, layout)
               for layout in ("nchw", "channels_last")}
    model = nanocnn_model(net, config.device)
    model.set_weights(weights)
    x, y = make_batch(net, batch, rng)
    max_diff = check_models(f"{net.name} b{batch}", model, runners, weights, x, y)
    for what, nc_fn, torch_fn in (
            ("train", lambda: model.train_on_batch(x, y), lambda r: r.train_on_batch(x, y)),
            ("inference", lambda: model.predict_on_batch(x),
             lambda r: r.predict_on_batch(x))):
        per_round = config.min_time / config.rounds
        measures = {"nanocnn": lambda nc_fn=nc_fn: timer_nc(nc_fn, per_round, config.min_reps)}
        for layout, r in runners.items():
            measures[layout] = lambda r=r, torch_fn=torch_fn: timer_torch(
                lambda: torch_fn(r), per_round, config.min_reps)
        t_torch = interleaved(measures, config.rounds)
        t_nc = t_torch.pop("nanocnn")
        t_tf32 = None
        if on_gpu:
            set_tf32(True)
            torch_only = {k: m for k, m in measures.items() if k != "nanocnn"}
            t_tf32 = min(t.seconds for t in interleaved(torch_only, config.rounds).values())
            set_tf32(False)
        layout = min(t_torch, key=lambda k: t_torch[k].seconds)
        torch_s = t_torch[layout].seconds
        row = {"network": net.name, "batch": batch, "threads": threads, "what": what,
               "parameters": networks.parameter_count(net),
               "nanocnn_s": t_nc.seconds, "torch_s": torch_s, "torch_layout": layout,
               "torch_nchw_s": t_torch["nchw"].seconds,
               "torch_channels_last_s": t_torch["channels_last"].seconds,
               "torch_tf32_s": t_tf32,
               "nanocnn_images_per_s": batch / t_nc.seconds,
               "torch_images_per_s": batch / torch_s, "ratio": torch_s / t_nc.seconds,
               "nanocnn_reps": t_nc.reps, "torch_reps": t_torch[layout].reps,
               "nanocnn_spread": t_nc.spread, "torch_spread": t_torch[layout].spread,
               "max_abs_diff": max_diff}
        rows.append(row)
        log(row)


__all__ = ["torch_model", "nanocnn_model", "TorchRunner", "check_models", "run",
           "MismatchError"]
