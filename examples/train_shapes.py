"""Train a small CNN with nanocnn's native kernels, no download needed.

The data are 28x28 grey images of four shapes (disc, square, triangle, cross) at random sizes
and positions with noise, drawn here with numpy. The network is

    conv 3x3, 8 filters, "same" -> ReLU -> max-pool 2x2
    conv 3x3, 16 filters, "same" -> ReLU -> max-pool 2x2
    dense 784 -> 4, softmax cross-entropy

and every step is an explicit call into nanocnn.functional (forward, then backward in reverse
order), followed by an SGD-with-momentum update done in place on the parameters' memory.

    python examples/train_shapes.py [--epochs 4] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import nanocnn as nc
import nanocnn.functional as F

CLASSES = ("disc", "square", "triangle", "cross")


def make_shapes(n: int, size: int = 28, seed: int = 0):
    """n images (n, 1, size, size) in [0, 1] and their labels (n,) in 0..3."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n, 1, size, size), np.float32)
    for i, label in enumerate(labels):
        r = rng.uniform(5, 9)  # half-size of the shape
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        dy, dx = rows - cy, cols - cx
        if label == 0:
            mask = dy**2 + dx**2 <= r**2
        elif label == 1:
            mask = (np.abs(dy) <= r * 0.8) & (np.abs(dx) <= r * 0.8)
        elif label == 2:
            mask = (dy <= r * 0.8) & (dy >= 2 * np.abs(dx) - r)
        else:
            mask = ((np.abs(dy) <= r / 4) | (np.abs(dx) <= r / 4)) & (np.abs(dy) <= r) & (np.abs(dx) <= r)
        image = mask * rng.uniform(0.6, 1.0) + rng.normal(0, 0.15, (size, size))
        images[i, 0] = np.clip(image, 0, 1)
    return images, labels


class SmallCNN:
    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)

        def he(shape, fan_in):
            return nc.tensor(rng.normal(0, np.sqrt(2 / fan_in), shape))

        self.params = {
            "w1": he((8, 1, 3, 3), 9), "b1": nc.zeros([8]),
            "w2": he((16, 8, 3, 3), 72), "b2": nc.zeros([16]),
            "w3": he((4, 16 * 7 * 7), 16 * 7 * 7), "b3": nc.zeros([4]),
        }
        self.velocity = {k: np.zeros(v.shape, np.float32) for k, v in self.params.items()}

    def forward(self, x):
        p = self.params
        c1 = F.conv2d(x, p["w1"], p["b1"], padding="same")
        r1 = F.relu(c1)
        m1 = F.max_pool2d(r1, 2)
        c2 = F.conv2d(m1, p["w2"], p["b2"], padding="same")
        r2 = F.relu(c2)
        m2 = F.max_pool2d(r2, 2)
        flat = m2.reshape([x.shape[0], -1])
        logits = F.linear(flat, p["w3"], p["b3"])
        return logits, (x, r1, m1, r2, m2, flat)

    def train_step(self, x, labels, lr: float, momentum: float = 0.9):
        p = self.params
        logits, (x, r1, m1, r2, m2, flat) = self.forward(x)
        loss, dlogits = F.softmax_cross_entropy(logits, labels)
        dflat, dw3, db3 = F.linear_backward(dlogits, flat, p["w3"])
        dm2 = dflat.reshape(list(m2.shape))
        dr2 = F.max_pool2d_backward(dm2, r2, 2)
        dc2 = F.relu_backward(dr2, r2)
        dm1, dw2, db2 = F.conv2d_backward(dc2, m1, p["w2"], padding="same")
        dr1 = F.max_pool2d_backward(dm1, r1, 2)
        dc1 = F.relu_backward(dr1, r1)
        _, dw1, db1 = F.conv2d_backward(dc1, x, p["w1"], padding="same")
        grads = {"w1": dw1, "b1": db1, "w2": dw2, "b2": db2, "w3": dw3, "b3": db3}
        for name, grad in grads.items():
            v = self.velocity[name]
            v *= momentum
            v -= lr * grad.numpy()
            p[name].numpy()[...] += v  # numpy() is a view: the update is in place
        accuracy = float((logits.numpy().argmax(1) == labels).mean())
        return loss, accuracy

    def predict(self, x):
        return self.forward(x)[0].numpy().argmax(1)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train a small CNN on generated shapes.")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--train-size", type=int, default=4000)
    args = parser.parse_args(argv)
    if args.threads:
        nc.set_num_threads(args.threads)

    x_train, y_train = make_shapes(args.train_size, seed=1)
    x_test, y_test = make_shapes(1000, seed=2)
    print(f"nanocnn {nc.__version__}: {len(x_train)} training and {len(x_test)} test images "
          f"of {', '.join(CLASSES)}; {nc.get_num_threads()} thread(s)")
    model = SmallCNN(seed=0)
    rng = np.random.default_rng(0)
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x_train))
        losses, accuracies = [], []
        start = time.perf_counter()
        for i in range(0, len(order), args.batch_size):
            batch = order[i:i + args.batch_size]
            loss, accuracy = model.train_step(nc.tensor(x_train[batch]), y_train[batch], args.lr)
            losses.append(loss)
            accuracies.append(accuracy)
        seconds = time.perf_counter() - start
        test_accuracy = float((model.predict(nc.tensor(x_test)) == y_test).mean())
        print(f"epoch {epoch}: loss {np.mean(losses):.4f}  train accuracy {np.mean(accuracies):.3f}  "
              f"test accuracy {test_accuracy:.3f}  ({len(x_train) / seconds:,.0f} images/s)")
    return test_accuracy


if __name__ == "__main__":
    main()
