"""Data for nmnp: IDX files, the dataset registry and lookup, downloads, image transforms.

The default dataset, ``"fashion-mnist-subset"``, ships inside the package, so everything
works offline with no setup::

    from nmnp.data import load_dataset
    ds = load_dataset()                       # 6,000 train / 1,000 test Fashion-MNIST images
    ds = load_dataset("fashion-mnist")        # full set: data_dir, $NMNP_DATA, Debian, cache
    ds = load_dataset("mnist", download=True) # fetched once into the cache, verified

Modules, bottom to top: :mod:`~nmnp.data.idx` (file format), :mod:`~nmnp.data.datasets`
(registry, lookup, loading), :mod:`~nmnp.data.download` (verified fetching),
:mod:`~nmnp.data.transforms` (rotation, normalisation).
"""

from .datasets import (
    DEFAULT_DATASET,
    Dataset,
    DatasetSpec,
    available_datasets,
    default_cache_dir,
    find_dataset_files,
    get_spec,
    load_dataset,
    pixel_stats,
)
from .download import download_dataset
from .idx import read_idx, read_idx_bytes, write_idx
from .transforms import normalize, rotate_images

__all__ = [
    "DEFAULT_DATASET",
    "Dataset",
    "DatasetSpec",
    "available_datasets",
    "default_cache_dir",
    "download_dataset",
    "find_dataset_files",
    "get_spec",
    "load_dataset",
    "normalize",
    "pixel_stats",
    "read_idx",
    "read_idx_bytes",
    "rotate_images",
    "write_idx",
]
