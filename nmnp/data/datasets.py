"""The datasets nmnp knows, where their files are looked for, and how they are loaded.

Four datasets are registered: ``"fashion-mnist-subset"`` (shipped inside the package, the
library's out-of-the-box default), and the full ``"fashion-mnist"``, ``"mnist"`` and
``"kmnist"``. All four share the MNIST file layout: four IDX files, 28 x 28 ``uint8``
images and labels 0..9.

A full dataset is looked for, in this order (the first complete set of four files wins):

1. the ``data_dir`` argument, if given (if it is given and the files are not there, that is
   an error: an explicit choice is never silently replaced by another copy);
2. the folder in the ``NMNP_DATA`` environment variable, or its subfolder named after the
   dataset;
3. the Debian package folder ``/usr/share/datasets/<name>`` (``apt-get install
   dataset-fashion-mnist``);
4. the download cache, ``<cache>/<name>`` (see :func:`default_cache_dir` and
   :mod:`nmnp.data.download`).

Each file may be gzip-compressed (``train-images-idx3-ubyte.gz``) or not
(``train-images-idx3-ubyte``).

Files found on disk load with a :class:`~nmnp.errors.DataWarning`, not an error, when they
are not what their name promises: a ``NMNP_DATA`` that is not a folder (the search goes on
without it); files of another size than the registry's; or, for a dataset with registered
SHA-256 digests, files whose decompressed content does not match them, naming the registered
dataset they belong to when they match another one's digests (Fashion-MNIST loaded as
``"mnist"``). A deliberate subset or re-packaging is legitimate, so these load, but results
will not compare with published figures.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import ConfigError, DataError, DataWarning, ShapeError
from .idx import read_idx_bytes, read_idx_hashed

__all__ = [
    "Dataset",
    "DatasetSpec",
    "REGISTRY",
    "DEFAULT_DATASET",
    "ROLES",
    "available_datasets",
    "get_spec",
    "find_dataset_files",
    "load_dataset",
    "pixel_stats",
    "default_cache_dir",
    "search_locations",
    "dataset_files_in",
]

#: The four files of an MNIST-format dataset, by role.
ROLES = ("train_images", "train_labels", "test_images", "test_labels")

_MNIST_FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

DEBIAN_ROOT = Path("/usr/share/datasets")
DEFAULT_DATASET = "fashion-mnist-subset"


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """Everything nmnp knows about one dataset, as data.

    Parameters
    ----------
    name : str
        Registry key, also the folder name looked for under ``NMNP_DATA``, Debian's
        ``/usr/share/datasets`` and the download cache.
    title : str
        Human-readable name.
    classes : tuple of str, length 10
        Class names, indexed by label.
    n_train, n_test : int
        Expected number of training and test images (checked after a download).
    files : mapping role -> file name
        The gzip file names; the same name without ``.gz`` is accepted too.
    mirrors : tuple of str
        Base URLs, tried in order; a file's URL is ``mirror + file name``.
    sha256 : mapping role -> str or None
        SHA-256 of each file's *decompressed* bytes. Hashing the content rather than the
        ``.gz`` means a recompressed copy (such as Debian's) verifies too. ``None`` where no
        trustworthy published value exists; the downloader then checks the IDX structure
        and the counts instead.
    homepage, license : str
        Where the dataset comes from and under which terms.
    shipped : bool
        True for the subset stored inside the package (no lookup, no download).
    """

    name: str
    title: str
    classes: tuple[str, ...]
    n_train: int
    n_test: int
    files: Mapping[str, str] = field(default_factory=lambda: dict(_MNIST_FILE_NAMES))
    mirrors: tuple[str, ...] = ()
    sha256: Mapping[str, str | None] = field(default_factory=lambda: dict.fromkeys(ROLES))
    homepage: str = ""
    license: str = ""
    shipped: bool = False

    def expected_shape(self, role: str) -> tuple[int, ...]:
        """Array shape the file for ``role`` must hold, e.g. ``(60000, 28, 28)``."""
        n = self.n_train if role.startswith("train") else self.n_test
        return (n, 28, 28) if role.endswith("images") else (n,)


FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

REGISTRY: dict[str, DatasetSpec] = {
    "fashion-mnist-subset": DatasetSpec(
        name="fashion-mnist-subset",
        title="Fashion-MNIST, stratified subset shipped with nmnp (600 train + 100 test per class)",
        classes=FASHION_CLASSES,
        n_train=6000,
        n_test=1000,
        # Decompressed digests of the shipped files, as written by
        # scripts/make_shipped_subset.py; tests check the shipped files against them.
        sha256={
            "train_images": "9f4bf132690fc42bc80de1643790359b71afead5b8fb55bbea23f06320e7b53a",
            "train_labels": "47a9b5c1cdaba1ba08b284a119cf8cdead183fe7f5dc4d16fbc8d97409f99fd4",
            "test_images": "e58201b34e4122bf82eb808d97e1780714d1f9d850a7104e1f2c4ca1d0b5eb95",
            "test_labels": "178f653195cc41ccfda0c291a364080de99bd0570f5e6909293eb600a3989702",
        },
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        license="MIT (Copyright 2017 Zalando SE); see nmnp/data/shipped/README.txt",
        shipped=True,
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        title="Fashion-MNIST (Zalando Research)",
        classes=FASHION_CLASSES,
        n_train=60000,
        n_test=10000,
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        # Computed from Debian's dataset-fashion-mnist files (decompressed). They agree with
        # the upstream gzip files, whose MD5s the upstream README publishes.
        sha256={
            "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        license="MIT (Copyright 2017 Zalando SE)",
    ),
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST handwritten digits (LeCun, Cortes, Burges)",
        classes=tuple(str(d) for d in range(10)),
        n_train=60000,
        n_test=10000,
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        # Decompressed-file digests as published, identically, in several independent public
        # projects that verify the uncompressed IDX files after downloading them from the
        # mirrors above. Not recomputed here (MNIST is not installed on the build machine).
        sha256={
            "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        homepage="http://yann.lecun.com/exdb/mnist/",
        license="see the homepage (commonly redistributed under CC BY-SA 3.0)",
    ),
    "kmnist": DatasetSpec(
        name="kmnist",
        title="Kuzushiji-MNIST (ROIS-DS Center for Open Data in the Humanities)",
        classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        n_train=60000,
        n_test=10000,
        mirrors=(
            "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            "https://storage.googleapis.com/kuzushiji-mnist/",
        ),
        # No trustworthy published digest of the *decompressed* KMNIST files was found
        # (only digests of the .gz files, which change if a mirror recompresses). Rather
        # than invent one, downloads are verified by IDX structure, shape (60000/10000 x
        # 28 x 28) and label range only.
        sha256=dict.fromkeys(ROLES),
        homepage="https://github.com/rois-codh/kmnist",
        license="CC BY-SA 4.0 (KMNIST Dataset, created by CODH, adapted from Kuzushiji Dataset)",
    ),
}


def available_datasets() -> list[str]:
    """Names of every registered dataset, the shipped default first.

    Returns
    -------
    list of str
    """
    return list(REGISTRY)


def get_spec(name: str | DatasetSpec) -> DatasetSpec:
    """The registry entry for ``name`` (a :class:`DatasetSpec` is returned unchanged).

    Names are matched case-insensitively.

    Raises
    ------
    ConfigError
        If ``name`` is not a registered dataset; the message lists the known names.
    """
    if isinstance(name, DatasetSpec):
        return name
    spec = REGISTRY.get(str(name).strip().lower())
    if spec is None:
        raise ConfigError(f"Unknown dataset {name!r}; known datasets: {', '.join(REGISTRY)}.")
    return spec


@dataclass(frozen=True, eq=False)
class Dataset:
    """An image classification dataset with a fixed train/test split.

    Parameters
    ----------
    name : str
    x_train : (N_train, H, W) uint8
    y_train : (N_train,) int64, values in ``0 .. len(classes) - 1``
    x_test : (N_test, H, W) uint8
    y_test : (N_test,) int64
    source : str
        Where the data was loaded from (a folder, or "shipped with nmnp").
    classes : tuple of str
        Class names, indexed by label.

    Raises
    ------
    ConfigError
        If ``name`` is not a non-empty string, or ``classes`` is not a non-empty sequence of
        strings (a single string such as ``"0123"`` is refused, not split into characters).
    ShapeError
        If an array has the wrong number of dimensions or dtype, or train and test images
        differ in size.
    DataError
        If images and labels disagree in count, or a label is out of range.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str = ""
    classes: tuple[str, ...] = tuple(str(d) for d in range(10))

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"Dataset name must be a non-empty string, got {self.name!r}.")
        object.__setattr__(self, "classes", _class_names(self.name, self.classes))
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or x.ndim != 3 or x.dtype != np.uint8:
                raise ShapeError(
                    f"Dataset {self.name!r}: x_{split} must be a (N, H, W) uint8 array, got "
                    f"{getattr(x, 'dtype', type(x).__name__)} with shape {getattr(x, 'shape', None)}."
                )
            y = np.asarray(y)
            if y.ndim != 1 or y.dtype.kind not in "iu":
                raise ShapeError(
                    f"Dataset {self.name!r}: y_{split} must be a 1-D integer array, got "
                    f"{y.dtype} with shape {y.shape}."
                )
            if len(x) != len(y):
                raise DataError(
                    f"Dataset {self.name!r}: {split} split has {len(x)} images but {len(y)} labels."
                )
            y = y.astype(np.int64, copy=False)
            if y.size and (y.min() < 0 or y.max() >= len(self.classes)):
                raise DataError(
                    f"Dataset {self.name!r}: y_{split} has labels in {y.min()}..{y.max()}, "
                    f"outside 0..{len(self.classes) - 1}."
                )
            object.__setattr__(self, f"y_{split}", y)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ShapeError(
                f"Dataset {self.name!r}: train images are {self.x_train.shape[1:]} but test "
                f"images are {self.x_test.shape[1:]}."
            )

    def __repr__(self) -> str:
        # The default dataclass repr would print every pixel of both splits.
        h, w = self.image_shape
        return (f"Dataset({self.name!r}: train {len(self.x_train):,} x {h}x{w}, test "
                f"{len(self.x_test):,}, {self.n_classes} classes, from {self.source!r})")

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(H, W)`` of every image."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        """Number of classes (10 for every registered dataset)."""
        return len(self.classes)

    def describe(self) -> dict:
        """A JSON-ready summary: name, source, sizes, image shape, class names."""
        return {
            "name": self.name,
            "source": self.source,
            "n_train": int(len(self.x_train)),
            "n_test": int(len(self.x_test)),
            "image_shape": list(self.image_shape),
            "classes": list(self.classes),
        }


def _class_names(name: str, classes) -> tuple[str, ...]:
    """``classes`` as a tuple of str, or ConfigError: a string would be split into its
    characters (``"0123"`` into four classes), and other non-sequences are no class list."""
    if isinstance(classes, (str, bytes)):
        raise ConfigError(
            f"Dataset {name!r}: classes must be a sequence of class names, one per label, got "
            f"the single string {classes!r}; write e.g. tuple({classes!r}) if you mean one "
            "class per character."
        )
    try:
        names = tuple(classes)
    except TypeError:
        raise ConfigError(
            f"Dataset {name!r}: classes must be a sequence of class names, got {type(classes).__name__}."
        ) from None
    bad = [c for c in names if not isinstance(c, str)]
    if bad:
        raise ConfigError(f"Dataset {name!r}: class names must be strings, got {bad[0]!r} in {names!r}.")
    if not names:
        raise ConfigError(f"Dataset {name!r}: classes is empty; give one name per label.")
    return names


def pixel_stats(x_uint8: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the pixels, scaled to [0, 1].

    Computed from exact integer sums (of the pixels and of their squares, in blocks of 1M
    pixels), so 47 million pixels need neither a float copy nor a 64-bit widened one, and
    the variance has no cancellation error. For the full Fashion-MNIST training split the
    result is about (0.2860, 0.3530); for MNIST, (0.1307, 0.3081).

    Parameters
    ----------
    x_uint8 : uint8 array, any shape (normally (N, H, W)), not empty

    Returns
    -------
    mean, std : float
        Population statistics (``ddof=0``) of ``x / 255``, in float64.

    Raises
    ------
    ShapeError
        If the array is not uint8 or is empty.
    """
    x = np.asarray(x_uint8)
    if x.dtype != np.uint8:
        raise ShapeError(f"pixel_stats needs uint8 pixels (0..255), got dtype {x.dtype}.")
    if x.size == 0:
        raise ShapeError("pixel_stats needs at least one pixel, got an empty array.")
    flat = x.reshape(-1)
    total, total_sq = 0, 0  # Python ints: exact, no overflow
    for start in range(0, flat.size, _STATS_BLOCK):
        block = flat[start : start + _STATS_BLOCK].astype(np.uint32)  # 255**2 fits easily
        total += int(block.sum(dtype=np.uint64))
        total_sq += int((block * block).sum(dtype=np.uint64))
    n = flat.size
    # n * sum(v^2) - (sum v)^2 = n^2 * var, exactly, in units of (1/255)^2.
    var = (n * total_sq - total * total) / (n * n * 255.0 * 255.0)
    return total / (n * 255.0), float(np.sqrt(max(var, 0.0)))


_STATS_BLOCK = 1 << 20


def default_cache_dir() -> Path:
    """Folder downloads go to: ``$NMNP_CACHE``, else ``$XDG_CACHE_HOME/nmnp``, else
    ``~/.cache/nmnp``. Each dataset gets its own subfolder."""
    if os.environ.get("NMNP_CACHE"):
        return Path(os.environ["NMNP_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "nmnp"
    return Path.home() / ".cache" / "nmnp"


def search_locations(name: str, data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The folders :func:`find_dataset_files` looks in, in order, with a label for each.

    Parameters
    ----------
    name : str
        A registered dataset name.
    data_dir : path, optional
        The explicit folder, if any; it is the only place looked when given.

    Returns
    -------
    list of (label, Path)
    """
    spec = get_spec(name)
    if data_dir is not None:
        base = Path(data_dir).expanduser()
        return [("data_dir", base), ("data_dir", base / spec.name)]
    places = []
    env = os.environ.get("NMNP_DATA")
    if env:
        base = Path(env).expanduser()
        places += [("NMNP_DATA", base), ("NMNP_DATA", base / spec.name)]
    places.append(("Debian package", DEBIAN_ROOT / spec.name))
    places.append(("download cache", default_cache_dir() / spec.name))
    return places


def dataset_files_in(folder: Path, spec: DatasetSpec) -> tuple[dict[str, Path], list[str]]:
    """Which of a dataset's four files are in ``folder``.

    Parameters
    ----------
    folder : Path
    spec : DatasetSpec

    Returns
    -------
    found : dict role -> Path
        The gzip name is preferred when both it and the uncompressed name exist.
    missing : list of str
        The (gzip) file names of the roles not found.
    """
    found, missing = {}, []
    for role in ROLES:
        gz_name = spec.files[role]
        plain = gz_name[:-3] if gz_name.endswith(".gz") else gz_name
        for candidate in (folder / gz_name, folder / plain):
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            missing.append(gz_name)
    return found, missing


def _shipped_folder():
    return resources.files("nmnp.data") / "shipped"


def find_dataset_files(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Locate the four files of a dataset without reading them.

    Parameters
    ----------
    name : str
        A registered dataset name (see :func:`available_datasets`).
    data_dir : path, optional
        Look only here (directly, or in its subfolder named after the dataset).

    Returns
    -------
    dict role -> Path
        Keys ``"train_images"``, ``"train_labels"``, ``"test_images"``, ``"test_labels"``.

    Raises
    ------
    ConfigError
        If ``name`` is unknown, or ``data_dir`` is not a path.
    DataError
        If ``data_dir`` is given but missing or incomplete, or if no complete set of files
        exists anywhere; the message lists every place looked and how to get the data.

    Warns
    -----
    DataWarning
        If the ``NMNP_DATA`` environment variable names something that is not a folder (a
        missing path, a file); the search goes on in the next places.
    """
    spec = get_spec(name)
    if spec.shipped:
        folder = Path(str(_shipped_folder()))
        found, missing = dataset_files_in(folder, spec)
        if missing:
            raise DataError(
                f"The shipped dataset {spec.name!r} is incomplete: {', '.join(missing)} missing "
                f"from {folder}; reinstall nmnp."
            )
        return found

    if data_dir is not None:
        base = Path(_check_data_dir(data_dir)).expanduser()
        if not base.is_dir():
            raise DataError(f"data_dir {base} does not exist or is not a folder.")
    notes = []
    for label, folder in search_locations(spec.name, data_dir):
        if not folder.is_dir():
            notes.append(f"{folder} ({label}): no such folder")
            if label == "NMNP_DATA" and folder == Path(os.environ["NMNP_DATA"]).expanduser():
                _warn_bad_env_folder(folder)
            continue
        found, missing = dataset_files_in(folder, spec)
        if not missing:
            return found
        notes.append(f"{folder} ({label}): missing {', '.join(missing)}")

    looked = "; ".join(notes)
    if data_dir is not None:
        raise DataError(
            f"data_dir {data_dir} does not hold the {spec.name} files (looked in {looked})."
        )
    debian_hint = "`apt-get install dataset-fashion-mnist`, " if spec.name == "fashion-mnist" else ""
    raise DataError(
        f"Dataset {spec.name!r} was not found (looked in {looked}); get it with "
        f"{debian_hint}a folder passed as --data-dir / data_dir, the NMNP_DATA environment "
        f"variable, or --download / download=True (into the cache, "
        f"{default_cache_dir() / spec.name})."
    )


def _check_data_dir(data_dir):
    """``data_dir`` unchanged if it is a path (str or os.PathLike), else ConfigError."""
    if isinstance(data_dir, (bytes, bool)) or not isinstance(data_dir, (str, os.PathLike)):
        raise ConfigError(f"data_dir must be a folder path (str or os.PathLike), got {data_dir!r}.")
    return data_dir


def _warn(message: str) -> None:
    """Emit a DataWarning attributed to the first caller outside ``nmnp/data``, so it points
    at the user's ``load_dataset`` (or ``find_dataset_files``) line, however deep it came from."""
    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(0), 1
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == here:
        frame, level = frame.f_back, level + 1
    warnings.warn(DataWarning(message), stacklevel=level)


def _warn_bad_env_folder(folder: Path) -> None:
    """Warn that NMNP_DATA names no folder. A warning, not an error: the variable is set once
    for every run and dataset (a shell profile, a job script), and a stale value must not stop
    a run whose data are found in the next places; but it must not be skipped in silence."""
    what = "is a file, not a folder" if folder.exists() else "does not exist"
    _warn(f"NMNP_DATA={os.environ['NMNP_DATA']} {what}; it is skipped and the dataset looked for "
          "in the next places (set NMNP_DATA to the folder holding the dataset files, or unset it)")


def _digest_owners() -> dict[str, list[tuple[str, str]]]:
    """Registered decompressed-content digest -> the (dataset, role) pairs it belongs to."""
    owners: dict[str, list[tuple[str, str]]] = {}
    for other in REGISTRY.values():
        for role, digest in other.sha256.items():
            if digest:
                owners.setdefault(digest.lower(), []).append((other.name, role))
    return owners


def _digest_problem(
    spec: DatasetSpec, digests: dict[str, str], names: dict[str, str]
) -> tuple[str, bool] | None:  # fmt: skip
    """What is wrong with files whose content digests are ``digests`` (role -> hex) when
    loaded as ``spec``; None when every digest the registry has for ``spec`` matches.

    Returns
    -------
    clause : str
        For a warning. When the four files are all another registered dataset's (each in
        its own role), that dataset is named; otherwise each differing file is listed, with
        the dataset and role it belongs to when its digest is registered.
    identified : bool
        Whether some differing file was recognised as another registered file.
    """
    expected = {role: d.lower() for role, d in spec.sha256.items() if d}
    differ = [role for role in ROLES if role in expected and digests.get(role) != expected[role]]
    if not differ:
        return None
    for other in REGISTRY.values():
        known = {role: d.lower() for role, d in other.sha256.items() if d}
        if other.name != spec.name and known and all(digests.get(r) == d for r, d in known.items()):
            return (f"these are {other.name}'s files, not {spec.name}'s (their content has "
                    f"{other.name}'s registered SHA-256 digests), so the class names would be "
                    f"wrong: load them under the name {other.name!r}"), True
    owners = _digest_owners()
    described, identified = [], False
    for role in differ:
        belongs = [f"{ds}'s {r}" for ds, r in owners.get(digests[role], ())]
        identified = identified or bool(belongs)
        described.append(f"{Path(names[role]).name} (SHA-256 {digests[role][:16]}) is "
                         + (" and ".join(belongs) if belongs else "no registered dataset's file"))
    return (f"their content does not match {spec.name}'s registered SHA-256 digests: "
            + ", ".join(described)), identified


def _check_pair(images: np.ndarray, labels: np.ndarray, img_file: str, lbl_file: str) -> None:
    """File-level checks that name the file, before :class:`Dataset` checks the arrays."""
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{img_file} does not hold (N, H, W) uint8 images: it holds {images.dtype} with "
            f"shape {images.shape}."
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{lbl_file} does not hold 1-D integer labels: it holds {labels.dtype} with "
            f"shape {labels.shape}."
        )
    if len(images) != len(labels):
        raise DataError(f"{img_file} has {len(images)} images but {lbl_file} has {len(labels)} labels.")


def _build(
    spec: DatasetSpec, arrays: dict[str, np.ndarray], names: dict[str, str], source: str,
    digests: dict[str, str] | None = None,
) -> Dataset:  # fmt: skip
    for split in ("train", "test"):
        _check_pair(
            arrays[f"{split}_images"], arrays[f"{split}_labels"],
            names[f"{split}_images"], names[f"{split}_labels"],
        )  # fmt: skip
    # Files found on disk are checked against the registry, in one warning: files of another
    # size, or another content, under this name (a subset, another dataset) still load, but
    # the user must know. Mismatched content is named only when the sizes do not already say
    # the files differ, unless the files are identified as another registered dataset's.
    odd = [f"{names[role]} holds {arrays[role].shape}, not {spec.expected_shape(role)}"
           for role in ("train_images", "test_images")
           if arrays[role].shape != spec.expected_shape(role)]
    content = _digest_problem(spec, digests, names) if digests else None
    parts = [f"{spec.name} files of an unexpected size: {'; '.join(odd)}"] if odd else []
    if content is not None and not odd:
        parts.append(f"{spec.name} files in {source}: {content[0]}")
    elif content is not None and content[1]:  # the sizes say they differ; say whose they are
        parts.append(content[0])
    if parts:
        _warn("; ".join(parts) + "; results will not compare with published figures")
    return Dataset(
        name=spec.name,
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"].astype(np.int64),
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"].astype(np.int64),
        source=source,
        classes=spec.classes,
    )


def _load_shipped(spec: DatasetSpec) -> Dataset:
    # importlib.resources reads the bytes through the package's loader, so this also works
    # when nmnp is installed as a wheel or imported from a zip file.
    folder = _shipped_folder()
    arrays, names = {}, {}
    for role in ROLES:
        entry = folder / spec.files[role]
        names[role] = f"nmnp/data/shipped/{spec.files[role]}"
        try:
            data = entry.read_bytes()
        except (OSError, FileNotFoundError) as exc:
            raise DataError(f"Shipped file {names[role]} cannot be read ({exc}); reinstall nmnp.") from exc
        arrays[role] = read_idx_bytes(data, names[role])
    return _build(spec, arrays, names, source="shipped with nmnp (nmnp/data/shipped)")


def load_dataset(
    name: str = DEFAULT_DATASET, data_dir: str | os.PathLike | None = None, download: bool = False
) -> Dataset:
    """Load a registered dataset.

    Parameters
    ----------
    name : str
        ``"fashion-mnist-subset"`` (default, shipped, needs nothing), ``"fashion-mnist"``,
        ``"mnist"`` or ``"kmnist"``.
    data_dir : path, optional
        Folder holding the four IDX files (or a subfolder named after the dataset). When
        given, nothing else is searched. Not for the shipped dataset, which has no files to
        look for.
    download : bool
        If the files are found nowhere, download them into the cache (verified; see
        :func:`nmnp.data.download.download_dataset`). Files already present anywhere on the
        search path are used without touching the network. A real bool (``True``/``False``,
        or a NumPy bool): a string such as ``"no"`` is refused, not taken as true.

    Returns
    -------
    Dataset

    Raises
    ------
    ConfigError
        If ``name`` is unknown, ``download`` is not a bool, ``data_dir`` is not a path, or
        ``data_dir`` is given for the shipped dataset (it would be ignored, and an explicit
        folder is never silently replaced by another copy).
    DataError
        If the files are missing, unreadable or malformed, or the download fails.

    Warns
    -----
    DataWarning
        If files found on disk are not what the name promises: another size than the
        registry's, or (for a dataset with registered digests: all but KMNIST) content whose
        SHA-256 does not match, naming the registered dataset the files belong to when they
        match one (Fashion-MNIST's files loaded as ``"mnist"``). Also if ``NMNP_DATA`` names
        no folder (see :func:`find_dataset_files`).
    """
    if not isinstance(download, (bool, np.bool_)):
        raise ConfigError(f"download must be True or False, got {download!r}.")
    if data_dir is not None:
        _check_data_dir(data_dir)
    spec = get_spec(name)
    if spec.shipped:
        if data_dir is not None:
            raise ConfigError(f"a data folder is only for datasets read from files; {spec.name} "
                              f"is shipped with nmnp (got data_dir={str(data_dir)!r})")
        return _load_shipped(spec)
    try:
        paths = find_dataset_files(spec.name, data_dir)
    except DataError:
        if not download or data_dir is not None:
            raise
        # Imported here, not at the top: the downloader reads this module's registry, so a
        # top-level import in both directions would be circular.
        from .download import download_dataset

        paths = download_dataset(spec.name)
    # Hashing the decompressed content costs about 0.03 s for the 55 MB of a full dataset,
    # against about 0.2 s for reading and decompressing it; datasets without registered
    # digests (KMNIST) are not hashed.
    hashed = any(spec.sha256.values())
    arrays, digests = {}, {}
    for role, path in paths.items():
        arrays[role], digests[role] = read_idx_hashed(path, hash_content=hashed)
    names = {role: str(path) for role, path in paths.items()}
    return _build(spec, arrays, names, source=str(paths["train_images"].parent),
                  digests=digests if hashed else None)
