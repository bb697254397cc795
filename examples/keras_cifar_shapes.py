"""The Keras tutorial's CIFAR-10 network, written as in Keras, trained on random data.

No download: the images are random noise with one colour channel brightened on one half, and
the label says which, so the network has something to learn. Swap in real CIFAR-10 arrays
(x: (N, 32, 32, 3) uint8 or float32, y: (N,) class ids) and nothing else changes.

    python examples/keras_cifar_shapes.py [--epochs 3] [--threads 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import nanocnn as nc


def build_model() -> nc.Sequential:
    model = nc.Sequential()
    model.add(nc.layers.Conv2D(filters=16, kernel_size=2, padding="same", activation="relu",
                               input_shape=(32, 32, 3)))
    model.add(nc.layers.MaxPooling2D(pool_size=2))
    model.add(nc.layers.Conv2D(32, 2, padding="same", activation="relu"))
    model.add(nc.layers.MaxPooling2D(2))
    model.add(nc.layers.Conv2D(64, 2, padding="same", activation="relu"))
    model.add(nc.layers.MaxPooling2D(2))
    model.add(nc.layers.Flatten())
    model.add(nc.layers.Dense(500, activation="relu"))
    model.add(nc.layers.Dropout(0.3))
    model.add(nc.layers.Dense(10, activation="softmax"))
    return model


def make_data(n: int, seed: int):
    """Random uint8 images with one colour channel brightened on the left or the right half;
    label = channel (0..2) + 3 * side (0 left, 1 right): six of the ten classes are used."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 200, (n, 32, 32, 3), dtype=np.uint8)
    channel = rng.integers(0, 3, n)
    side = rng.integers(0, 2, n)
    for i in range(n):
        half = slice(0, 16) if side[i] == 0 else slice(16, 32)
        x[i, :, half, channel[i]] += 55
    return x, channel + 3 * side


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        nc.set_num_threads(args.threads)
    nc.set_random_seed(0)

    x_train, y_train = make_data(4000, seed=1)
    x_test, y_test = make_data(1000, seed=2)
    x_train, x_test = x_train / np.float32(255), x_test / np.float32(255)

    model = build_model()
    model.summary()  # Total params: 528,054
    model.compile(optimizer=nc.optimizers.Adam(learning_rate=0.001),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  device=args.device)
    history = model.fit(x_train, y_train, batch_size=64, epochs=args.epochs,
                        validation_split=0.1,
                        callbacks=[nc.callbacks.EarlyStopping(monitor="val_loss", patience=2)])
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.3f}")

    path = os.path.join(tempfile.mkdtemp(), "cifar_shapes.safetensors")
    model.save(path)
    same = np.array_equal(nc.load_model(path).predict(x_test[:100]), model.predict(x_test[:100]))
    print(f"saved to {path}; reloaded model predicts the same: {same}")
    return history


if __name__ == "__main__":
    main()
