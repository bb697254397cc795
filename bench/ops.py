"""Per-op benchmark, nanocnn against PyTorch: a thin script over nanocnn.benchmark.

    python bench/ops.py --threads 1            # writes bench/results/ops-cpu-1t.{json,md,png}
    python bench/ops.py --threads 2
    python bench/ops.py --device cuda          # bench/results/ops-cuda.*

Equivalent to `nanocnn bench --only ops --out bench/results [options]`; see bench/README.md and
`python bench/ops.py --help`.
"""
import os
import sys

from nanocnn.benchmark import main

if __name__ == "__main__":
    results = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    sys.exit(main(["--only", "ops", "--out", results] + sys.argv[1:]))
