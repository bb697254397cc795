"""Saving and loading models: one safetensors file per model.

File contents (format version 1):

* tensors: each weight as "<layer name>.<weight name>" ("conv2d.kernel", "dense_1.bias", ...)
  in PyTorch layouts (Conv2D kernel (K, C, R, S), Dense kernel (out, in)), float32; with the
  optimizer state, also "optimizer.<parameter index>.<slot>" ("optimizer.0.m", ...).
* metadata (strings): "format" = "nanocnn", "format_version" = "1", "nanocnn_version",
  "model_config" (JSON: the Sequential's layers and input shape), "weights" (JSON: the weight
  tensor names in model order), "compile_config" (JSON: loss, metrics, optimizer with its
  iteration count) when the model was compiled, "optimizer_state" = "1" when the optimizer
  state is included; plus any ``metadata=`` entries the caller adds (``nanocnn train`` records
  the class names and input scaling there for ``nanocnn predict``).

Any safetensors reader opens the file (``safetensors.torch.load_file`` gives PyTorch tensors
for an equal ``torch.nn`` module). Saving is atomic: the bytes go to a temporary file in the
target's directory, are flushed and fsync'ed, then renamed over the target (``os.replace``), so
a crash mid-save leaves the previous file intact; the temporary file is removed on error.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from . import __version__

FORMAT = "nanocnn"
FORMAT_VERSION = 1


def _metadata(model, include_optimizer: bool) -> tuple[dict, dict]:
    from . import losses, optimizers

    tensors, names = {}, []
    for layer in model.layers:
        for wname, array in zip(layer.weight_names, layer.get_weights()):
            key = f"{layer.name}.{wname}"
            tensors[key] = np.ascontiguousarray(array, dtype=np.float32)
            names.append(key)
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "nanocnn_version": __version__,
        "model_config": json.dumps({"class_name": "Sequential", "config": model.get_config()}),
        "weights": json.dumps(names),
    }
    if model.loss is not None:
        meta["compile_config"] = json.dumps({
            "loss": losses.serialize(model.loss),
            "metrics": list(model._metric_keys),
            "optimizer": optimizers.serialize(model.optimizer),
        })
        if include_optimizer and model.optimizer is not None and model.optimizer._slots:
            for key, array in model.optimizer.get_state().items():
                tensors[f"optimizer.{key}"] = np.ascontiguousarray(array, dtype=np.float32)
            meta["optimizer_state"] = "1"
    return tensors, meta


def _write_all(f, data: bytes) -> None:
    """Writes data to an open file (a separate function so tests can simulate a crash)."""
    view = memoryview(data)
    while view:
        written = f.write(view)
        view = view[written:]


def atomic_write(path, data: bytes) -> None:
    """Replaces ``path`` with ``data`` atomically (temp file in the same directory, fsync,
    os.replace); on any error the temp file is removed and ``path`` is unchanged."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"save: {path!r} is a directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        try:  # keep the permissions of the file replaced, or the usual ones for a new file
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def save_model(model, filepath, include_optimizer: bool = True, metadata=None) -> None:
    """``model.save(filepath, include_optimizer, metadata)``: see the module doc."""
    import safetensors.numpy

    model._require_built("save")
    tensors, meta = _metadata(model, include_optimizer)
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"save: metadata must map str to str, got {key!r}: {value!r}")
        if key in meta:
            raise ValueError(f"save: metadata key {key!r} is reserved for nanocnn's own entries")
        meta[key] = value
    atomic_write(filepath, safetensors.numpy.save(tensors, metadata=meta))


def _read(filepath) -> tuple[dict, dict]:
    """(tensors, metadata) of a nanocnn file; ValueError for anything else."""
    from safetensors import safe_open

    path = os.fspath(filepath)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_model: no such file: {path!r}")
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # safetensors raises its own error types for bad headers/lengths
        raise ValueError(f"load_model: {path!r} is not a valid safetensors file (truncated or "
                         f"corrupt?): {err}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"load_model: {path!r} is a safetensors file but not a nanocnn model "
                         f"(its metadata has no format=\"nanocnn\"); use "
                         f"safetensors.numpy.load_file to read its tensors")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        raise ValueError(f"load_model: {path!r} has an invalid format_version "
                         f"{meta.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise ValueError(f"load_model: {path!r} has format version {version}, newer than this "
                         f"nanocnn ({__version__}) reads ({FORMAT_VERSION}); upgrade nanocnn")
    return tensors, meta


def _json(path, meta, key):
    try:
        return json.loads(meta[key])
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"load_model: {os.fspath(path)!r}: metadata {key!r} is missing or not "
                         f"valid JSON ({err})") from None


def _set_weights_from(model, path, tensors, meta) -> None:
    names = _json(path, meta, "weights")
    expected = [w for layer in model.layers for w in layer.weights]
    if len(names) != len(expected):
        raise ValueError(f"{os.fspath(path)!r} holds {len(names)} weight arrays, the model has "
                         f"{len(expected)}")
    arrays = []
    for name, w in zip(names, expected):
        if name not in tensors:
            raise ValueError(f"{os.fspath(path)!r}: tensor {name!r} is missing")
        if tuple(tensors[name].shape) != tuple(w.shape):
            raise ValueError(f"{os.fspath(path)!r}: tensor {name!r} has shape "
                             f"{tuple(tensors[name].shape)}, the model expects {tuple(w.shape)}")
        arrays.append(tensors[name])
    model.set_weights(arrays)


def load_model(filepath, device: str = "cpu", compile: bool = True):
    """Rebuilds a model saved with ``model.save``: architecture, weights and (with ``compile``)
    the loss, metrics and optimizer, with its state when it was saved, so ``fit`` resumes where
    it stopped. The model is placed on ``device``. A truncated, corrupt or foreign file raises
    ValueError."""
    from . import optimizers
    from .models import Sequential

    tensors, meta = _read(filepath)
    config = _json(filepath, meta, "model_config")
    if not isinstance(config, dict) or config.get("class_name") != "Sequential":
        raise ValueError(f"load_model: {os.fspath(filepath)!r}: unsupported model class "
                         f"{config.get('class_name') if isinstance(config, dict) else config!r}")
    try:
        model = Sequential.from_config(config["config"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"load_model: {os.fspath(filepath)!r}: invalid model_config ({err})") \
            from None
    model._require_built("load_model")
    if device != "cpu":
        model.to(device)
    _set_weights_from(model, filepath, tensors, meta)
    if compile and "compile_config" in meta:
        cc = _json(filepath, meta, "compile_config")
        opt = optimizers.get({k: cc["optimizer"][k] for k in ("class_name", "config")})
        opt.iterations = int(cc["optimizer"].get("iterations", 0))
        model.compile(optimizer=opt, loss=cc["loss"], metrics=cc["metrics"] or None)
        if meta.get("optimizer_state") == "1":
            prefix = "optimizer."
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            opt.set_state(state, model.weights)
    return model


def load_weights(model, filepath) -> None:
    """``model.load_weights(filepath)``: the weights of a saved model, into this one."""
    model._require_built("load_weights")
    tensors, meta = _read(filepath)
    _set_weights_from(model, filepath, tensors, meta)
