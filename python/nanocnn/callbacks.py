"""Callbacks for ``fit``, Keras's hook names and classes.

Write your own by subclassing :class:`Callback` and overriding any of ``on_train_begin/end``,
``on_epoch_begin/end(epoch, logs)``, ``on_train_batch_begin/end(batch, logs)`` (alias
``on_batch_begin/end``) and ``on_test_begin/end``. ``self.model`` is the model being trained;
setting ``self.model.stop_training = True`` ends ``fit`` after the current epoch.

Per-batch ``logs`` (the running mean loss and accuracy of the epoch so far) cost a wait for the
device on every step, so they are only computed when some callback overrides a batch-end hook;
epoch-end logs always hold ``loss``, the metrics and, with validation data, ``val_loss`` and
``val_<metric>``.

Provided: History (added by fit, returned by it), EarlyStopping, ModelCheckpoint,
ReduceLROnPlateau, LearningRateScheduler, TerminateOnNaN, LambdaCallback.
"""
from __future__ import annotations

import math
import warnings

__all__ = [
    "Callback",
    "History",
    "EarlyStopping",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "LearningRateScheduler",
    "TerminateOnNaN",
    "LambdaCallback",
]


class Callback:
    """Base class; every hook does nothing by default."""

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)


def _overrides(cb: Callback, *names: str) -> bool:
    return any(getattr(type(cb), n) is not getattr(Callback, n) or n in vars(cb) for n in names)


class CallbackList:
    """The callbacks of one ``fit`` call, with the flags the training loop checks."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be nanocnn.callbacks.Callback instances, got "
                                f"{type(cb).__name__}")
            cb.set_model(model)
            cb.set_params(params)
        self.wants_batch_begin = any(_overrides(cb, "on_train_batch_begin", "on_batch_begin")
                                     for cb in self.callbacks)
        self.wants_batch_end = any(_overrides(cb, "on_train_batch_end", "on_batch_end")
                                   for cb in self.callbacks)

    def call(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)


class History(Callback):
    """Records the epoch-end logs: ``history.history["loss"]`` etc., one entry per epoch, and
    ``history.epoch`` (the epoch indices). ``fit`` returns it."""

    def __init__(self):
        super().__init__()
        self.history: dict = {}
        self.epoch: list = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


class _Monitor(Callback):
    """Shared logic of callbacks that watch one logged quantity."""

    def __init__(self, monitor, mode, min_delta, owner):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{owner}: mode must be \"auto\", \"min\" or \"max\", got {mode!r}")
        self.monitor = monitor
        if mode == "auto":
            mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
        self.mode = mode
        self.min_delta = abs(float(min_delta))
        self._owner = owner

    def _improved(self, current, reference) -> bool:
        if reference is None:
            return True
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta

    def _current(self, logs):
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"{self._owner}: the monitored quantity {self.monitor!r} is not in the "
                          f"logs (available: {sorted(logs or {})}); pass validation data or "
                          f"monitor another one", RuntimeWarning, stacklevel=3)
        return value


class EarlyStopping(_Monitor):
    """Stops training when ``monitor`` has stopped improving, Keras's
    ``EarlyStopping(monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
    baseline=None, restore_best_weights=False, start_from_epoch=0)``.

    ``restore_best_weights=True`` puts back the weights of the best epoch when it stops (and at
    the end of training if it never stopped early but a later epoch was worse, as in Keras 3).
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta, "EarlyStopping")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None
        self.last_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        self.last_epoch = epoch
        current = self._current(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        self.wait += 1
        if self._improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
                return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None and \
                self.best_epoch != self.last_epoch:
            if self.verbose:
                print(f"EarlyStopping: restoring the weights of epoch {self.best_epoch + 1}")
            self.model.set_weights(self.best_weights)
        if self.stopped_epoch and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")


class ModelCheckpoint(_Monitor):
    """Saves the model after each epoch, Keras's ``ModelCheckpoint(filepath, monitor="val_loss",
    verbose=0, save_best_only=False, save_weights_only=False, mode="auto")``.

    ``filepath`` may hold ``{epoch}`` (1-based) and log keys, e.g.
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.safetensors"``. Each save is atomic (see ``model.save``):
    a crash never leaves a half-written checkpoint in place of the previous one. With
    ``save_best_only`` only improvements of ``monitor`` are written.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", initial_value_threshold=None):
        super().__init__(monitor, mode, 0.0, "ModelCheckpoint")
        self.filepath = str(filepath)
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.best = initial_value_threshold

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = self._current(logs)
            if current is None or not self._improved(current, self.best):
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best} to "
                      f"{current:.5f}, saving the model to {path}")
            self.best = current
        elif self.verbose:
            print(f"Epoch {epoch + 1}: saving the model to {path}")
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class ReduceLROnPlateau(_Monitor):
    """Multiplies the learning rate by ``factor`` when ``monitor`` has not improved for
    ``patience`` epochs, Keras's ``ReduceLROnPlateau(monitor="val_loss", factor=0.1,
    patience=10, verbose=0, mode="auto", min_delta=1e-4, cooldown=0, min_lr=0.0)``."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta, "ReduceLROnPlateau")
        if not 0.0 < float(factor) < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor!r}")
        self.factor, self.patience, self.verbose = float(factor), int(patience), verbose
        self.cooldown, self.min_lr = int(cooldown), float(min_lr)

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.cooldown_counter = None, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        current = self._current(logs)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current, self.best):
            self.best, self.wait = current, 0
            return
        if self.cooldown_counter > 0:
            return
        self.wait += 1
        if self.wait >= self.patience:
            optimizer = self.model.optimizer
            new_lr = max(optimizer.learning_rate * self.factor, self.min_lr)
            if new_lr < optimizer.learning_rate:
                optimizer.learning_rate = new_lr
                if self.verbose:
                    print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                          f"{new_lr:.4g}")
            self.cooldown_counter, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Sets the learning rate at the start of each epoch to ``schedule(epoch, lr)`` (epoch is
    0-based), Keras's ``LearningRateScheduler(schedule, verbose=0)``."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be callable, got {schedule!r}")
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        optimizer.learning_rate = float(self.schedule(epoch, optimizer.learning_rate))
        if self.verbose:
            print(f"Epoch {epoch + 1}: learning rate {optimizer.learning_rate:.4g}")


class TerminateOnNaN(Callback):
    """Stops training as soon as a batch's loss is NaN or infinite (checks every batch, which
    makes each step wait for the device)."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: invalid loss {loss}, terminating training")
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``.
    Accepts on_epoch_begin/end(epoch, logs), on_batch_begin/end(batch, logs) and
    on_train_begin/end(logs)."""

    _HOOKS = ("on_epoch_begin", "on_epoch_end", "on_batch_begin", "on_batch_end",
              "on_train_begin", "on_train_end")

    def __init__(self, **hooks):
        super().__init__()
        for name, fn in hooks.items():
            if name not in self._HOOKS:
                raise TypeError(f"LambdaCallback: unknown hook {name!r}; expected one of "
                                f"{self._HOOKS}")
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"LambdaCallback: {name} must be callable, got {fn!r}")
                setattr(self, name, fn)
        if "on_batch_begin" in vars(self):
            self.on_train_batch_begin = self.on_batch_begin
        if "on_batch_end" in vars(self):
            self.on_train_batch_end = self.on_batch_end

