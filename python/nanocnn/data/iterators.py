"""Batch iterators with a background prefetch thread: flow() over arrays, flow_from_directory().

An iterator yields batches forever, epoch after epoch, like Keras's: ``len(it)`` is the number of
batches in one epoch (the last one may be smaller), the order is reshuffled every epoch when
``shuffle`` is true, and ``next(it)`` gives the next batch. One epoch is therefore
``itertools.islice(it, len(it))``; ``Sequential.fit(it, epochs=E)`` takes ``len(it)`` batches
per epoch. ``it.reset()`` starts again from the beginning of an epoch (with a seed, the same
sequence of batches again).

While the model trains on one batch, a background thread already loads, augments and converts
the next ``prefetch`` batches (numpy and Pillow release the GIL for their heavy work). The
batches do not depend on the thread: one generator, seeded with ``seed``, draws every epoch's
order and every augmentation in sequence, so a seeded iterator gives the same batches with or
without prefetching.
"""
from __future__ import annotations

import math
import queue
import threading
import weakref

import numpy as np


class BatchIterator:
    """Base class: batching, shuffling, seeding and the prefetch thread.

    Subclasses set ``n`` (samples) and implement ``_batch(index_array, rng)``, which returns
    the batch for those sample indices.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed, prefetch: int):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(prefetch, bool) or not isinstance(prefetch, (int, np.integer)) or prefetch < 0:
            raise ValueError(f"prefetch must be an int >= 0, got {prefetch!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        if n < 1:
            raise ValueError("there are no samples to iterate over")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.prefetch = int(prefetch)
        self._plan = None
        self._queue = None
        self._stop = None
        self._thread = None

    def __len__(self) -> int:
        """Batches per epoch: ceil(samples / batch_size)."""
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        return self

    def __next__(self):
        if self.prefetch == 0:
            if self._plan is None:
                self._plan = _Plan(self.n, self.batch_size, self.shuffle, self.seed)
            return self._batch(*self._plan.next_indices())
        if self._thread is None:
            self._start()
        item = self._queue.get()
        if isinstance(item, _Failure):
            self.reset()
            raise item.error
        return item

    next = __next__  # Keras's spelling

    def reset(self) -> None:
        """Starts again at the beginning of an epoch (stops and discards what was prefetched)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        self._plan = self._queue = self._stop = self._thread = None

    close = reset

    def __del__(self):
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()

    def _start(self):
        self._queue = queue.Queue(maxsize=self.prefetch)
        self._stop = threading.Event()
        plan = _Plan(self.n, self.batch_size, self.shuffle, self.seed)
        self._thread = threading.Thread(
            target=_produce, args=(weakref.ref(self), plan, self._queue, self._stop),
            name=f"nanocnn-prefetch-{type(self).__name__}", daemon=True)
        self._thread.start()

    def _batch(self, index_array, rng):  # pragma: no cover - abstract
        raise NotImplementedError


class _Plan:
    """The sequence of batches: each epoch's order and the generator augmentation draws from."""

    def __init__(self, n, batch_size, shuffle, seed):
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.rng = np.random.default_rng(seed)
        self.order, self.position = None, 0

    def next_indices(self):
        if self.order is None or self.position >= self.n:
            self.order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
            self.position = 0
        indices = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return indices, self.rng


class _Failure:
    def __init__(self, error):
        self.error = error


def _produce(owner_ref, plan, out, stop):
    """The prefetch thread: makes batches in order until stopped or the iterator is gone.

    It holds the iterator only through a weak reference while it waits, so an iterator that is
    dropped is collected and its thread ends.
    """
    while not stop.is_set():
        owner = owner_ref()
        if owner is None:
            return
        try:
            item = owner._batch(*plan.next_indices())
        except BaseException as err:  # handed to the consumer, raised there
            item = _Failure(err)
        del owner
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                break
            except queue.Full:
                if owner_ref() is None:
                    return
        if isinstance(item, _Failure):
            return
