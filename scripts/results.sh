#!/usr/bin/env bash
# Reproduces the README's results table: full Fashion-MNIST, 5 tasks, 1 epoch, every strategy,
# on the rotated, permuted and split benchmarks (about 10 to 30 minutes on 2 cores).
# Needs the full dataset: `apt-get install dataset-fashion-mnist`, --data-dir or NMNP_DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p results
for benchmark in rotated permuted split; do
    python -m nmnp compare --benchmark "$benchmark" --dataset fashion-mnist --tasks 5 --epochs 1 \
        --strategies crwn,finetune,separate,supsup \
        --json "results/compare-$benchmark.json" --plot "results/compare-$benchmark.png"
done
python scripts/results_table.py results/compare-rotated.json results/compare-permuted.json results/compare-split.json
