"""Pictures of training: loss curves, activations, first-layer filters, predictions.

Needs matplotlib (``pip install "nanocnn[plot]"``), imported only when a function is called.
Without a display (no $DISPLAY on Linux, or MPLBACKEND unset on a server) the Agg backend is
used, which writes files. Every function returns the matplotlib Figure; ``path=`` also saves it
as a PNG (the figure is then closed, so scripts do not pile up open figures).
"""
from __future__ import annotations

import os
import sys

import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError('nanocnn.viz needs matplotlib: pip install "nanocnn[plot]" '
                          "(or pip install matplotlib)") from err
    if ("matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND")
            and sys.platform.startswith("linux")
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _finish(plt, fig, path):
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), format="png", dpi=100)
        plt.close(fig)
    return fig


def plot_history(history, path=None):
    """Loss (and accuracy, when recorded) per epoch, training and validation.

    ``history``: what ``model.fit`` returns (its ``.history``) or a dict such as
    {"loss": [...], "accuracy": [...], "val_loss": [...], "val_accuracy": [...]}.
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or "loss" not in logs:
        raise ValueError("plot_history: history must be a History or a dict with a 'loss' list, "
                         f"got {type(history).__name__}")
    metrics = ["loss"] + [m for m in ("accuracy",) if m in logs]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        epochs = np.arange(1, len(logs[metric]) + 1)
        ax.plot(epochs, logs[metric], "o-", label="training")
        if "val_" + metric in logs:
            ax.plot(epochs, logs["val_" + metric], "s--", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    return _finish(plt, fig, path)


def _as_image(image):
    """(H, W, C) -> something imshow takes: (H, W) for one channel, RGB scaled to [0, 1]."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def show_activations(model, image, max_channels=8, path=None):
    """Each layer's output for one image: up to ``max_channels`` feature maps per image layer,
    a strip of values for flat layers.

    ``image`` is one input (H, W, C) as the model takes it (a batch of one is fine too); this
    calls ``model.activations(x)`` (list of arrays, one per layer; images (1, H, W, C)).
    """
    x = np.asarray(image)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or len(x) != 1:
        raise ValueError(f"show_activations: image must be (H, W, C) or (1, H, W, C), got {x.shape}")
    activations = model.activations(x)
    names = [getattr(layer, "name", f"layer {i}") for i, layer in enumerate(model.layers)]
    plt = _pyplot()
    rows = len(activations) + 1
    fig, axes = plt.subplots(rows, max_channels, figsize=(1.4 * max_channels, 1.5 * rows),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(_as_image(x[0]), cmap="gray")
    axes[0, 0].set_title("input", fontsize=8)
    for row, (name, act) in enumerate(zip(names, activations), start=1):
        act = np.asarray(act)[0]
        if act.ndim == 3:  # (H, W, C) feature maps
            for ch in range(min(max_channels, act.shape[-1])):
                axes[row, ch].imshow(act[..., ch], cmap="viridis")
            axes[row, 0].set_title(f"{name} {act.shape}", fontsize=8, loc="left")
        else:  # a vector: one strip over the whole row
            ax = fig.add_subplot(rows, 1, row + 1)
            ax.imshow(act.reshape(1, -1), aspect="auto", cmap="viridis")
            ax.set_yticks([])
            ax.set_title(f"{name} ({act.size},)", fontsize=8, loc="left")
    return _finish(plt, fig, path)


def show_filters(layer, max_filters=32, path=None):
    """The kernels of a Conv2D layer, from ``layer.get_weights()[0]`` of layout (K, C, R, S).

    With C == 3 each filter is drawn as one RGB patch; otherwise each of the first channels as
    a grayscale patch (one row per filter). Each patch is scaled to its own min..max.
    """
    weights = layer.get_weights() if hasattr(layer, "get_weights") else layer
    kernel = np.asarray(weights[0] if isinstance(weights, (list, tuple)) else weights)
    if kernel.ndim != 4:
        raise ValueError(f"show_filters: expected a conv kernel (K, C, R, S), got shape {kernel.shape}")
    k = min(kernel.shape[0], max_filters)
    plt = _pyplot()
    if kernel.shape[1] == 3:
        cols = min(k, 8)
        rows = -(-k // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.2 * rows), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for i in range(k):
            axes[i // cols, i % cols].imshow(_as_image(kernel[i].transpose(1, 2, 0)))
    else:
        channels = min(kernel.shape[1], 8)
        fig, axes = plt.subplots(k, channels, figsize=(1.0 * channels + 0.5, 1.0 * k), squeeze=False)
        for i in range(k):
            for c in range(channels):
                axes[i, c].imshow(_as_image(kernel[i, c]), cmap="gray")
                axes[i, c].axis("off")
    fig.suptitle(f"{getattr(layer, 'name', 'conv')}: {kernel.shape[0]} filters "
                 f"{kernel.shape[2]}x{kernel.shape[3]} over {kernel.shape[1]} channels", fontsize=9)
    return _finish(plt, fig, path)


def show_predictions(model, x, y, class_names, n=16, path=None):
    """A grid of images titled "predicted (probability)", green when right, red when wrong.

    ``x`` (N, H, W, C) as the model takes it; ``y`` the true labels, class ids (N,) or one-hot
    (N, classes); ``class_names`` a sequence of names. Shows the first ``n``.
    """
    x = np.asarray(x)[:n]
    y = np.asarray(y)[:n]
    if x.ndim != 4:
        raise ValueError(f"show_predictions: x must be images (N, H, W, C), got shape {x.shape}")
    truth = y.argmax(axis=1) if y.ndim == 2 else y.reshape(-1).astype(int)
    if len(truth) != len(x):
        raise ValueError(f"show_predictions: x and y must have the same length, got {len(x)} and {len(truth)}")
    probs = np.asarray(model.predict(x))
    if probs.ndim == 1 or probs.shape[1] == 1:  # one sigmoid unit: P(class 1)
        p1 = probs.reshape(-1)
        probs = np.stack([1 - p1, p1], axis=1)
    predicted = probs.argmax(axis=1)
    plt = _pyplot()
    cols = min(len(x), 8)
    rows = -(-len(x) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(len(x)):
        ax = axes[i // cols, i % cols]
        ax.imshow(_as_image(x[i]), cmap="gray")
        right = predicted[i] == truth[i]
        ax.set_title(f"{class_names[predicted[i]]}\n{probs[i, predicted[i]]:.0%}", fontsize=8,
                     color="green" if right else "red")
    return _finish(plt, fig, path)
