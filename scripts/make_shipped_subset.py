#!/usr/bin/env python
"""Regenerate nmnp's shipped Fashion-MNIST subset (nmnp/data/shipped/) from the full dataset.

The subset is stratified: for each of the 10 classes, 600 training and 100 test images are
drawn without replacement by a NumPy ``default_rng(SEED)`` generator, visiting the classes in
label order, training split first. The chosen indices are then sorted, so the subset keeps the
original file order. Files are written as gzip IDX with no time stamp, so running this script
again on the same data reproduces the same content (and, with the same zlib, the same bytes).

Usage::

    python scripts/make_shipped_subset.py                 # full data found as nmnp finds it
    python scripts/make_shipped_subset.py --data-dir DIR  # or from an explicit folder
    python scripts/make_shipped_subset.py --check         # verify the shipped files, write nothing
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # let the script run from a source checkout without installing
    sys.path.insert(0, str(REPO))

from nmnp.data.datasets import ROLES, get_spec, load_dataset  # noqa: E402
from nmnp.data.idx import _encode, read_idx, write_idx  # noqa: E402

SEED = 2204  # from the paper's arXiv number, 2204.04297
TRAIN_PER_CLASS = 600
TEST_PER_CLASS = 100
OUT_DIR = REPO / "nmnp" / "data" / "shipped"

# Quoted from Debian's /usr/share/doc/dataset-fashion-mnist/copyright (package
# dataset-fashion-mnist), which carries the upstream MIT ("Expat") licence of Fashion-MNIST.
LICENCE = """\
Files: *
Copyright: 2017, Zalando SE, https:tech.zalando.com
License: Expat

License: Expat
 Permission is hereby granted, free of charge, to any person obtaining a
 copy of this software and associated documentation files (the "Software"),
 to deal in the Software without restriction, including without limitation
 the rights to use, copy, modify, merge, publish, distribute, sublicense,
 and/or sell copies of the Software, and to permit persons to whom the
 Software is furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included
 in all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS
 OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF
 MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT.
 IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY
 CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT,
 TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE
 SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""

README = f"""\
Fashion-MNIST subset shipped with nmnp
======================================

These four gzip-compressed IDX files are a stratified subset of Fashion-MNIST
(https://github.com/zalandoresearch/fashion-mnist), by Han Xiao, Kashif Rasul and
Roland Vollgraf, Zalando Research, 2017. The images and labels are unchanged.

  train-images-idx3-ubyte.gz   6000 x 28 x 28 uint8 ({TRAIN_PER_CLASS} per class)
  train-labels-idx1-ubyte.gz   6000 labels 0..9
  t10k-images-idx3-ubyte.gz    1000 x 28 x 28 uint8 ({TEST_PER_CLASS} per class)
  t10k-labels-idx1-ubyte.gz    1000 labels 0..9

How it was made: scripts/make_shipped_subset.py in the nmnp source tree. From the full
training split, for each class 0..9 in turn, {TRAIN_PER_CLASS} images are drawn without
replacement with numpy.random.default_rng({SEED}); then, with the same generator, {TEST_PER_CLASS}
per class from the test split. The chosen indices are sorted, so the original order is
kept. Running the script on the full dataset regenerates these files exactly.

Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt,
7 Sneaker, 8 Bag, 9 Ankle boot.

Licence of the data (Fashion-MNIST is released under the MIT licence). The notice below
is copied from Debian's copyright file for the package dataset-fashion-mnist:

{LICENCE}"""

_FILE = {role: get_spec("fashion-mnist").files[role] for role in ROLES}


def subset_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``per_class`` items of every class 0..9, drawn without replacement.

    Parameters
    ----------
    labels : (N,) int array
    per_class : int
    rng : numpy Generator, advanced in place (classes are visited in label order)

    Returns
    -------
    (10 * per_class,) int64, sorted
    """
    picks = []
    for c in range(10):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise SystemExit(f"class {c} has only {len(members)} items, {per_class} needed")
        picks.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(picks)).astype(np.int64)


def make_subset(dataset, seed: int = SEED) -> dict[str, np.ndarray]:
    """The subset's four arrays, by role, from a full Fashion-MNIST :class:`Dataset`."""
    rng = np.random.default_rng(seed)
    tr = subset_indices(dataset.y_train, TRAIN_PER_CLASS, rng)
    te = subset_indices(dataset.y_test, TEST_PER_CLASS, rng)
    return {
        "train_images": dataset.x_train[tr],
        "train_labels": dataset.y_train[tr].astype(np.uint8),
        "test_images": dataset.x_test[te],
        "test_labels": dataset.y_test[te].astype(np.uint8),
    }


def content_sha256(array: np.ndarray) -> str:
    """SHA-256 of the array's uncompressed IDX encoding (what the registry records)."""
    return hashlib.sha256(_encode(array)).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the full Fashion-MNIST IDX files")
    parser.add_argument("--out", default=str(OUT_DIR), help=f"output folder (default {OUT_DIR})")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out; write nothing")
    args = parser.parse_args(argv)

    full = load_dataset("fashion-mnist", data_dir=args.data_dir)
    print(f"source: {full.source} ({len(full.x_train)} train, {len(full.x_test)} test)")
    arrays = make_subset(full)
    out = Path(args.out)
    registry = get_spec("fashion-mnist-subset").sha256
    ok = True
    for role in ROLES:
        path = out / _FILE[role]
        digest = content_sha256(arrays[role])
        if args.check:
            same = path.is_file() and np.array_equal(read_idx(path), arrays[role])
            print(f"{'same' if same else 'DIFFERENT'}: {path}")
            ok &= same
        else:
            out.mkdir(parents=True, exist_ok=True)
            write_idx(path, arrays[role], compress=True)
            print(f"wrote {path}: {arrays[role].dtype} {arrays[role].shape}, "
                  f"{path.stat().st_size} bytes, content sha256 {digest}")
        if registry.get(role) != digest:
            print(f"  note: registry digest for {role} is {registry.get(role)}; update nmnp/data/datasets.py")
    if not args.check:
        readme = out / "README.txt"
        readme.write_text(README, encoding="utf-8")
        print(f"wrote {readme}: {readme.stat().st_size} bytes")
        total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
        print(f"total: {total} bytes in {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
