"""End-to-end benchmark (training step and inference), nanocnn against PyTorch: a thin script
over nanocnn.benchmark.

    python bench/train.py --device cpu --threads 1,2   # writes bench/results/train-cpu.{json,md}
    python bench/train.py --device cuda                # bench/results/train-cuda.*

Equivalent to `nanocnn bench --only train --out bench/results [options]`; see bench/README.md.
"""
import os
import sys

from nanocnn.benchmark import main

if __name__ == "__main__":
    results = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    sys.exit(main(["--only", "train", "--out", results] + sys.argv[1:]))
