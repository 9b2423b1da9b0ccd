"""Dataset registry, lookup order, loading, validation, the shipped subset and pixel_stats."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from nmnp.data import datasets as ds_mod
from nmnp.data.datasets import (
    ROLES,
    Dataset,
    available_datasets,
    find_dataset_files,
    get_spec,
    load_dataset,
    pixel_stats,
)
from nmnp.data.idx import write_idx
from nmnp.errors import ConfigError, DataError, DataWarning, ShapeError

# Most tests here write tiny datasets under real names: each load rightly warns that they are
# not the full files. The warning itself is tested below, where it is not ignored.
pytestmark = pytest.mark.filterwarnings("ignore::nmnp.errors.DataWarning")

REPO = Path(__file__).resolve().parents[1]
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_debian = pytest.mark.skipif(
    not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed",
)


def write_tiny(folder: Path, n_train=20, n_test=10, gz=True, seed=0, n_labels=None) -> dict:
    """Write a small MNIST-format dataset into ``folder``; return its arrays by role."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train if n_labels is None else n_labels) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for role, name in get_spec("mnist").files.items():
        write_idx(folder / (name if gz else name[:-3]), arrays[role], compress=gz)
    return arrays


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No NMNP_DATA, an empty cache and an empty Debian root: only what a test puts there."""
    monkeypatch.delenv("NMNP_DATA", raising=False)
    monkeypatch.setenv("NMNP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ds_mod, "DEBIAN_ROOT", tmp_path / "debian")
    return tmp_path


# -- registry --------------------------------------------------------------------------


def test_registry_names():
    names = available_datasets()
    assert names[0] == "fashion-mnist-subset"
    assert set(names) == {"fashion-mnist-subset", "fashion-mnist", "mnist", "kmnist"}
    for name in names:
        spec = get_spec(name)
        assert len(spec.classes) == 10 and set(spec.files) == set(ROLES)
    assert get_spec("Fashion-MNIST").name == "fashion-mnist"  # case-insensitive
    assert get_spec("fashion-mnist").classes[9] == "Ankle boot"


def test_unknown_name_lists_known_ones():
    with pytest.raises(ConfigError, match="cifar10.*fashion-mnist-subset, fashion-mnist, mnist, kmnist"):
        load_dataset("cifar10")


# -- the shipped subset ------------------------------------------------------------------


def test_shipped_subset_is_stratified_and_well_formed():
    ds = load_dataset()  # the default
    assert ds.name == "fashion-mnist-subset" and "shipped" in ds.source
    assert ds.x_train.shape == (6000, 28, 28) and ds.x_test.shape == (1000, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert (np.bincount(ds.y_train, minlength=10) == 600).all()
    assert (np.bincount(ds.y_test, minlength=10) == 100).all()
    assert ds.classes == get_spec("fashion-mnist").classes
    assert len({im.tobytes() for im in ds.x_train}) > 5990  # real, varied images


def test_shipped_files_match_registry_digests_and_size():
    folder = resources.files("nmnp.data") / "shipped"
    spec = get_spec("fashion-mnist-subset")
    total = 0
    for role in ROLES:
        packed = (folder / spec.files[role]).read_bytes()
        total += len(packed)
        assert hashlib.sha256(gzip.decompress(packed)).hexdigest() == spec.sha256[role], role
    assert total <= 5 * 1024 * 1024


def test_shipped_licence_notice():
    text = (resources.files("nmnp.data") / "shipped" / "README.txt").read_text(encoding="utf-8")
    assert "Zalando SE" in text and "Permission is hereby granted, free of charge" in text
    assert "default_rng(2204)" in text and "make_shipped_subset.py" in text


def test_shipped_subset_loads_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert len(load_dataset("fashion-mnist-subset").x_test) == 1000


@pytest.fixture(scope="module")
def full_fashion():
    return load_dataset("fashion-mnist", data_dir=DEBIAN_FASHION)


@needs_debian
def test_subset_regenerates_exactly_from_the_full_dataset(full_fashion):
    spec = importlib.util.spec_from_file_location("make_subset", REPO / "scripts" / "make_shipped_subset.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    arrays = script.make_subset(full_fashion)
    shipped = load_dataset()
    np.testing.assert_array_equal(arrays["train_images"], shipped.x_train)
    np.testing.assert_array_equal(arrays["train_labels"], shipped.y_train)
    np.testing.assert_array_equal(arrays["test_images"], shipped.x_test)
    np.testing.assert_array_equal(arrays["test_labels"], shipped.y_test)


@needs_debian
def test_full_fashion_mnist_statistics(full_fashion):
    assert full_fashion.x_train.shape == (60000, 28, 28) and full_fashion.x_test.shape == (10000, 28, 28)
    mean, std = pixel_stats(full_fashion.x_train)
    assert mean == pytest.approx(0.2860, abs=5e-4) and std == pytest.approx(0.3530, abs=5e-4)


# -- lookup order ------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("sub", [False, True])
def test_data_dir_directly_or_in_named_subfolder(isolated, gz, sub):
    base = isolated / "data"
    arrays = write_tiny(base / "mnist" if sub else base, gz=gz)
    ds = load_dataset("mnist", data_dir=base)
    np.testing.assert_array_equal(ds.x_train, arrays["train_images"])
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])
    assert ds.classes == tuple("0123456789")
    paths = find_dataset_files("mnist", data_dir=base)
    assert set(paths) == set(ROLES) and all(p.name.endswith(".gz") == gz for p in paths.values())


def test_missing_data_dir_does_not_fall_through(isolated, monkeypatch):
    write_tiny(isolated / "env")
    monkeypatch.setenv("NMNP_DATA", str(isolated / "env"))  # a valid copy elsewhere...
    with pytest.raises(DataError, match="data_dir .*nowhere.* does not exist"):
        load_dataset("mnist", data_dir=isolated / "nowhere", download=True)  # ...is not used


def test_incomplete_data_dir_names_the_missing_file(isolated):
    write_tiny(isolated / "d")
    (isolated / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        find_dataset_files("mnist", data_dir=isolated / "d")


def test_env_var_wins_over_debian_and_cache(isolated, monkeypatch):
    write_tiny(isolated / "debian" / "mnist", n_train=30)
    write_tiny(isolated / "cache" / "mnist", n_train=40)
    assert len(load_dataset("mnist").x_train) == 30  # Debian before cache
    write_tiny(isolated / "env" / "mnist", n_train=20)
    monkeypatch.setenv("NMNP_DATA", str(isolated / "env"))
    assert len(load_dataset("mnist").x_train) == 20  # NMNP_DATA before Debian


def test_cache_is_the_last_resort(isolated):
    write_tiny(isolated / "cache" / "kmnist", n_train=40)
    ds = load_dataset("kmnist")
    assert len(ds.x_train) == 40 and ds.classes[0] == "o" and "cache" in ds.source


def test_not_found_lists_every_place_and_every_remedy(isolated, monkeypatch):
    monkeypatch.setenv("NMNP_DATA", str(isolated / "env"))
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist")
    msg = str(info.value)
    for needle in ("NMNP_DATA", "Debian package", "download cache", str(isolated / "env"),
                   str(isolated / "debian" / "fashion-mnist"), "apt-get install dataset-fashion-mnist",
                   "--data-dir", "download=True"):  # fmt: skip
        assert needle in msg, needle


# -- validation --------------------------------------------------------------------------


@pytest.mark.filterwarnings("error::nmnp.errors.DataWarning")
def test_files_of_another_size_load_with_a_warning_that_names_them(isolated):
    write_tiny(isolated / "d", n_train=20, n_test=10)
    with pytest.warns(DataWarning) as caught:
        ds = load_dataset("mnist", data_dir=isolated / "d")
    assert len(caught) == 1 and len(ds.x_train) == 20
    message = str(caught[0].message)
    assert message.startswith("mnist files of an unexpected size: ")
    assert "train-images-idx3-ubyte.gz holds (20, 28, 28), not (60000, 28, 28)" in message
    assert "t10k-images-idx3-ubyte.gz holds (10, 28, 28), not (10000, 28, 28)" in message
    assert caught[0].filename == __file__  # it points at the caller's load_dataset line


@pytest.mark.filterwarnings("error::nmnp.errors.DataWarning")
def test_files_of_the_expected_size_and_the_shipped_subset_load_silently(isolated, monkeypatch):
    load_dataset()  # the shipped subset has the size its registry entry says
    monkeypatch.setattr(ds_mod, "REGISTRY", {
        **ds_mod.REGISTRY, "mnist": dataclasses.replace(get_spec("mnist"), n_train=20, n_test=10)})
    write_tiny(isolated / "d", n_train=20, n_test=10)
    assert len(load_dataset("mnist", data_dir=isolated / "d").x_train) == 20  # "error": no warning


def test_label_count_mismatch_in_files_names_both(isolated):
    write_tiny(isolated / "d", n_train=20, n_labels=19)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz has 20 images but .*train-labels-idx1-ubyte.gz has 19 labels"):
        load_dataset("mnist", data_dir=isolated / "d")


def test_labels_file_where_images_expected(isolated):
    write_tiny(isolated / "d")
    write_idx(isolated / "d" / "train-images-idx3-ubyte.gz", np.zeros(20, np.uint8), compress=True)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz does not hold \(N, H, W\) uint8"):
        load_dataset("mnist", data_dir=isolated / "d")


def test_dataset_validation():
    x = np.zeros((4, 28, 28), np.uint8)
    y = np.array([0, 1, 2, 3])
    ds = Dataset("t", x, y, x, y)
    assert ds.y_train.dtype == np.int64 and ds.image_shape == (28, 28) and ds.n_classes == 10
    with pytest.raises(DataError, match="4 images but 3 labels"):
        Dataset("t", x, y[:3], x, y)
    with pytest.raises(DataError, match="outside 0..9"):
        Dataset("t", x, y, x, np.array([0, 1, 2, 10]))
    with pytest.raises(DataError, match="outside 0..9"):
        Dataset("t", x, np.array([0, -1, 2, 3]), x, y)
    with pytest.raises(ShapeError, match="uint8"):
        Dataset("t", x.astype(np.float32), y, x, y)
    with pytest.raises(ShapeError, match="differ|but test"):
        Dataset("t", x, y, np.zeros((4, 14, 14), np.uint8), y)


def test_pixel_stats_matches_numpy():
    x = np.random.default_rng(3).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    mean, std = pixel_stats(x)
    assert mean == pytest.approx((x / 255).mean(), rel=1e-12)
    assert std == pytest.approx((x / 255).std(), rel=1e-12)
    assert pixel_stats(np.full((2, 2), 255, np.uint8)) == (1.0, 0.0)
    with pytest.raises(ShapeError, match="uint8"):
        pixel_stats(x / 255)
    with pytest.raises(ShapeError, match="empty"):
        pixel_stats(np.zeros((0, 28, 28), np.uint8))


def test_a_data_folder_for_the_shipped_dataset_is_refused_not_ignored(tmp_path, capsys):
    """load_dataset (and so `compare --data-dir`, which used to ignore it) refuses it; `run`
    refused it already."""
    from nmnp.cli import main
    from nmnp.errors import ConfigError

    with pytest.raises(ConfigError, match="fashion-mnist-subset is shipped with nmnp"):
        load_dataset("fashion-mnist-subset", data_dir=tmp_path)
    code = main(["compare", "--dataset", "fashion-mnist-subset", "--data-dir", str(tmp_path),
                 "--tasks", "1", "--strategies", "crwn", "--units", "40", "--quiet"])
    assert code == 2 and "is shipped with nmnp" in capsys.readouterr().err


def test_repr_is_one_short_line_not_every_pixel():
    text = repr(load_dataset())
    assert text == ("Dataset('fashion-mnist-subset': train 6,000 x 28x28, test 1,000, 10 classes, "
                    "from 'shipped with nmnp (nmnp/data/shipped)')")
