"""The ``nanocnn`` command: train a small CNN, predict image files, run the benchmarks.

    nanocnn train                                   # the embedded Fashion-MNIST subset
    nanocnn train --dataset cifar10 --epochs 10 --device cuda
    nanocnn train --data-dir photos/ --image-size 64 --output photos.safetensors
    nanocnn predict model.safetensors shoe.png bag.jpg
    nanocnn bench ...                               # nanocnn.benchmark.main(...)

``train`` builds Conv(32, 3x3) - MaxPool - Conv(64, 3x3) - MaxPool - Dense(128) - Dense(classes)
with the Sequential API, trains it with Adam and sparse categorical cross-entropy on pixels scaled
to [0, 1], prints the test accuracy and saves the model. The file also records, in its
safetensors metadata, what ``predict`` needs: the class names, the input shape and the scaling.
Exit status: 0 on success, 2 for bad arguments or input files, 1 for other errors.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

DATASETS = ("default", "fashion_mnist", "mnist", "cifar10")
META_KEY = "nanocnn_cli"  # safetensors metadata entry written by train, read by predict


class UsageError(Exception):
    """Bad input from the command line: reported without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nanocnn", description="nanocnn: train and run small CNNs.")
    sub = parser.add_subparsers(dest="command", metavar="{train,predict,bench}")
    sub.required = True

    train = sub.add_parser("train", help="train a small CNN and save it")
    source = train.add_mutually_exclusive_group()
    source.add_argument("--dataset", choices=DATASETS, default="default",
                        help="built-in dataset (default: the embedded Fashion-MNIST subset)")
    source.add_argument("--data-dir", metavar="DIR",
                        help="a folder of class sub-folders of images (20%% held out for testing)")
    train.add_argument("--image-size", type=int, nargs="+", metavar="N", default=[64],
                       help="with --data-dir: image size, N or H W (default 64)")
    train.add_argument("--grayscale", action="store_true", help="with --data-dir: one channel")
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    train.add_argument("--output", default="model.safetensors", metavar="PATH")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    predict = sub.add_parser("predict", help="classify image files with a trained model")
    predict.add_argument("model", help="a .safetensors file written by nanocnn train")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top", type=int, default=1, help="print the K most likely classes")

    bench = sub.add_parser("bench", help="benchmarks (nanocnn.benchmark)", add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # everything after "bench" belongs to the benchmark's own parser
        return _bench(argv[1:])
    args = build_parser().parse_args(argv)  # exits with status 2 on bad arguments
    try:
        if args.command == "train":
            return train(args)
        return predict(args)
    except UsageError as err:
        print(f"nanocnn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _bench(argv) -> int:
    try:
        from nanocnn import benchmark
    except ImportError as err:
        print(f"nanocnn bench: the benchmark suite is not available ({err})", file=sys.stderr)
        return 1
    result = benchmark.main(argv)
    return int(result or 0)


# ---- train ------------------------------------------------------------------------------------


def _positive(name, value):
    if value < 1:
        raise UsageError(f"{name} must be >= 1, got {value}")


def load_training_data(args):
    """((x_train, y_train), (x_test, y_test), class_names) with x uint8/float (N, H, W, C), y (N,)."""
    from nanocnn import datasets

    if args.data_dir is not None:
        return _images_from_directory(args)
    if args.dataset == "default":
        return datasets.load_default()
    module = getattr(datasets, args.dataset)
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data(verbose=not args.quiet)
    except (datasets.DownloadError, datasets.ChecksumError) as err:
        raise UsageError(str(err)) from err
    if x_train.ndim == 3:
        x_train, x_test = x_train[..., None], x_test[..., None]
    return ((x_train, y_train.reshape(-1)), (x_test, y_test.reshape(-1)),
            tuple(module.class_names))


def _images_from_directory(args):
    from nanocnn.data import ImageDataGenerator

    size = args.image_size
    if len(size) not in (1, 2) or min(size) < 1:
        raise UsageError(f"--image-size takes N or H W (positive), got {' '.join(map(str, size))}")
    target = (size[0], size[-1])
    try:
        it = ImageDataGenerator().flow_from_directory(
            args.data_dir, target_size=target, color_mode="grayscale" if args.grayscale else "rgb",
            class_mode="sparse", batch_size=256, shuffle=False, prefetch=0)
        batches = [next(it) for _ in range(len(it))]
    except ValueError as err:
        raise UsageError(str(err)) from err
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches]).astype(np.int64)
    if len(it.class_indices) < 2:
        raise UsageError(f"{args.data_dir} has {len(it.class_indices)} class folder; at least 2 are needed")
    # hold out every fifth image of each class (a fixed, class-balanced split)
    rng = np.random.default_rng(args.seed)
    test = np.zeros(len(y), dtype=bool)
    for c in range(len(it.class_indices)):
        members = rng.permutation(np.flatnonzero(y == c))
        test[members[: len(members) // 5]] = True
    if not test.any():
        raise UsageError(f"{args.data_dir} has too few images to hold any out for testing")
    names = tuple(sorted(it.class_indices, key=it.class_indices.get))
    return (x[~test], y[~test]), (x[test], y[test]), names


def build_model(input_shape, num_classes):
    """The CLI's small CNN for images of ``input_shape`` (H, W, C)."""
    import nanocnn as nc

    layers = nc.layers
    return nc.Sequential([
        layers.Conv2D(32, 3, activation="relu", input_shape=tuple(int(s) for s in input_shape)),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ])


def train(args) -> int:
    import nanocnn as nc

    _positive("--epochs", args.epochs)
    _positive("--batch-size", args.batch_size)
    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise UsageError(f"--device must be cpu or cuda, got {args.device!r}")
    if args.device.startswith("cuda") and not nc.cuda_available():
        raise UsageError("--device cuda: no usable GPU (nanocnn.cuda_available() is False)")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise UsageError(f"--output: folder {out_dir} does not exist")
    if not hasattr(nc, "Sequential"):
        print("nanocnn train: this build has no model API (nanocnn.Sequential)", file=sys.stderr)
        return 1

    nc.set_random_seed(args.seed)  # initial weights and shuffling repeat from run to run
    (x_train, y_train), (x_test, y_test), class_names = load_training_data(args)
    rescale = 1.0 / 255.0
    x_train = x_train.astype(np.float32) * np.float32(rescale)
    x_test = x_test.astype(np.float32) * np.float32(rescale)
    say = (lambda *a: None) if args.quiet else print
    say(f"training on {len(x_train)} images {x_train.shape[1:]}, {len(class_names)} classes, "
        f"testing on {len(x_test)}; device {args.device}")

    model = build_model(x_train.shape[1:], len(class_names))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if args.device != "cpu":
        model.to(args.device)
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              verbose=0 if args.quiet else 1)
    seconds = time.perf_counter() - start
    result = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    accuracy = float(result[1] if isinstance(result, (list, tuple)) else result)
    info = {"class_names": list(class_names), "input_shape": list(x_train.shape[1:]),
            "rescale": rescale}
    model.save(args.output, metadata={META_KEY: json.dumps(info)})
    print(f"test accuracy {accuracy:.4f} ({len(x_test)} images) after {args.epochs} epochs "
          f"in {seconds:.1f} s; saved {args.output}")
    return 0


# ---- predict ----------------------------------------------------------------------------------


def predict(args) -> int:
    import nanocnn as nc
    from nanocnn.data import img_to_array, load_img

    _positive("--top", args.top)
    if not os.path.isfile(args.model):
        raise UsageError(f"model file {args.model!r} not found")
    missing = [p for p in args.images if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"image file(s) not found: {', '.join(missing)}")
    try:
        from safetensors import safe_open

        with safe_open(args.model, framework="numpy") as f:
            info = json.loads((f.metadata() or {}).get(META_KEY, "null"))
    except Exception as err:  # safetensors raises its own error types for a non-safetensors file
        raise UsageError(f"{args.model} is not a safetensors model file: {err}") from err
    if not info:
        raise UsageError(f"{args.model} was not written by `nanocnn train` (no {META_KEY} "
                         "metadata: class names and input shape are unknown)")
    if not hasattr(nc, "load_model"):
        print("nanocnn predict: this build has no model API (nanocnn.load_model)", file=sys.stderr)
        return 1
    try:
        model = nc.load_model(args.model)
    except ValueError as err:
        raise UsageError(str(err)) from err
    height, width, channels = info["input_shape"]
    mode = {1: "grayscale", 3: "rgb", 4: "rgba"}[channels]
    names = info["class_names"]
    try:
        x = np.stack([img_to_array(load_img(p, mode, (height, width))) for p in args.images])
    except ValueError as err:
        raise UsageError(str(err)) from err
    probs = np.asarray(model.predict(x * np.float32(info["rescale"])))
    for path, p in zip(args.images, probs):
        best = np.argsort(-p)[: args.top]
        print(f"{path}: " + ", ".join(f"{names[i]} ({p[i]:.3f})" for i in best))
    return 0


if __name__ == "__main__":
    sys.exit(main())
