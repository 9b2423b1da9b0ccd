"""Dataset registry, lookup order, loading, validation, the shipped subset and pixel_stats."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import importlib.util
import warnings
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
# not the full files. The warning itself is tested below, where it is not ignored: with
# pytest.warns, which records whatever the filters say, and, where a load must be silent, with
# no_data_warning() (a test's own filterwarnings("error") mark would not do: pytest applies
# this module-level mark after it, so "ignore" would win).
pytestmark = pytest.mark.filterwarnings("ignore::nmnp.errors.DataWarning")


@contextlib.contextmanager
def no_data_warning():
    """Within the block, any DataWarning raises, whatever the module's filters say."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        yield

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


def content_digests(folder: Path) -> dict:
    """SHA-256 of the decompressed content of the four files in ``folder``, by role."""
    found, missing = ds_mod.dataset_files_in(folder, get_spec("mnist"))
    assert not missing
    return {role: hashlib.sha256(gzip.decompress(path.read_bytes()) if path.suffix == ".gz"
                                 else path.read_bytes()).hexdigest() for role, path in found.items()}


def register(monkeypatch, name: str, sha256: dict, n_train: int = 20, n_test: int = 10) -> None:
    """Make the registry say that ``name`` has these digests and sizes (for tiny files)."""
    monkeypatch.setattr(ds_mod, "REGISTRY", {**ds_mod.REGISTRY, name: dataclasses.replace(
        get_spec(name), n_train=n_train, n_test=n_test, sha256=dict(sha256))})


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


def test_files_of_another_size_load_with_a_warning_that_names_them(isolated):
    write_tiny(isolated / "d", n_train=20, n_test=10)
    with pytest.warns(DataWarning) as caught:
        ds = load_dataset("mnist", data_dir=isolated / "d")
    assert len(caught) == 1 and len(ds.x_train) == 20
    message = str(caught[0].message)
    assert message.startswith("mnist files of an unexpected size: ")
    assert "train-images-idx3-ubyte.gz holds (20, 28, 28), not (60000, 28, 28)" in message
    assert "t10k-images-idx3-ubyte.gz holds (10, 28, 28), not (10000, 28, 28)" in message
    assert "SHA-256" not in message  # of course the content differs: the sizes already say so
    assert caught[0].filename == __file__  # it points at the caller's load_dataset line


def test_files_of_the_expected_size_and_content_and_the_shipped_subset_load_silently(isolated, monkeypatch):
    with no_data_warning():
        load_dataset()  # the shipped subset has the size its registry entry says
    write_tiny(isolated / "d", n_train=20, n_test=10)
    register(monkeypatch, "mnist", content_digests(isolated / "d"))
    with no_data_warning():
        assert len(load_dataset("mnist", data_dir=isolated / "d").x_train) == 20
    # The same files under digests of other content do warn (so the check above could fail).
    register(monkeypatch, "mnist", dict.fromkeys(ROLES, "0" * 64))
    with pytest.warns(DataWarning, match="does not match mnist's registered SHA-256 digests"):
        load_dataset("mnist", data_dir=isolated / "d")


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


# -- content digests of files found on disk -----------------------------------------------


def test_files_of_the_expected_size_but_another_content_warn_once_naming_each_file(isolated, monkeypatch):
    write_tiny(isolated / "d", seed=0)
    write_tiny(isolated / "other", seed=1)
    register(monkeypatch, "mnist", content_digests(isolated / "other"))
    got = content_digests(isolated / "d")
    with pytest.warns(DataWarning) as caught:
        ds = load_dataset("mnist", data_dir=isolated / "d")
    assert len(caught) == 1 and len(ds.x_train) == 20 and caught[0].filename == __file__
    message = str(caught[0].message)
    assert message.startswith(f"mnist files in {isolated / 'd'}: their content does not match mnist's "
                              "registered SHA-256 digests: ")
    for role in ("train_images", "test_images"):  # the labels are the same in both folders
        name = get_spec("mnist").files[role]
        assert f"{name} (SHA-256 {got[role][:16]}) is no registered dataset's file" in message
    assert "labels" not in message and message.endswith("; results will not compare with published figures")


def test_another_registered_datasets_files_are_named_as_such(isolated, monkeypatch):
    """The audit's case in small: Fashion-MNIST's files loaded as "mnist" named nothing."""
    write_tiny(isolated / "fashion", seed=0)
    write_tiny(isolated / "digits", seed=1)
    register(monkeypatch, "fashion-mnist", content_digests(isolated / "fashion"))
    register(monkeypatch, "mnist", content_digests(isolated / "digits"))
    with pytest.warns(DataWarning) as caught:
        ds = load_dataset("mnist", data_dir=isolated / "fashion")
    assert len(caught) == 1 and ds.name == "mnist"  # it still loads: a warning, not an error
    assert str(caught[0].message) == (
        f"mnist files in {isolated / 'fashion'}: these are fashion-mnist's files, not mnist's (their "
        "content has fashion-mnist's registered SHA-256 digests), so the class names would be wrong: "
        "load them under the name 'fashion-mnist'; results will not compare with published figures")
    with no_data_warning():  # under their own name they load silently
        assert load_dataset("fashion-mnist", data_dir=isolated / "fashion").classes[0] == "T-shirt/top"


def test_a_mixed_folder_names_whose_file_each_one_is(isolated, monkeypatch):
    write_tiny(isolated / "fashion", seed=0)
    write_tiny(isolated / "digits", seed=1)
    register(monkeypatch, "fashion-mnist", content_digests(isolated / "fashion"))
    register(monkeypatch, "mnist", content_digests(isolated / "digits"))
    train = get_spec("mnist").files["train_images"]
    (isolated / "digits" / train).write_bytes((isolated / "fashion" / train).read_bytes())
    with pytest.warns(DataWarning, match=rf"{train} \(SHA-256 [0-9a-f]{{16}}\) is fashion-mnist's "
                                         r"train_images; results will not") as caught:
        load_dataset("mnist", data_dir=isolated / "digits")
    assert len(caught) == 1 and "these are" not in str(caught[0].message)


def test_a_subset_of_another_size_is_identified_in_the_same_single_warning(isolated, monkeypatch):
    write_tiny(isolated / "d", n_train=20, n_test=10)
    register(monkeypatch, "fashion-mnist-subset", content_digests(isolated / "d"), n_train=20, n_test=10)
    with pytest.warns(DataWarning) as caught:
        load_dataset("fashion-mnist", data_dir=isolated / "d")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith("fashion-mnist files of an unexpected size: ")
    assert "; these are fashion-mnist-subset's files, not fashion-mnist's" in message


def test_a_dataset_without_registered_digests_is_not_hashed(isolated, monkeypatch):
    assert not any(get_spec("kmnist").sha256.values())
    register(monkeypatch, "kmnist", get_spec("kmnist").sha256)  # only the tiny sizes
    write_tiny(isolated / "d")
    hashed = []
    real = ds_mod.read_idx_hashed

    def spy(path, hash_content=True):
        hashed.append(hash_content)
        return real(path, hash_content=hash_content)

    monkeypatch.setattr(ds_mod, "read_idx_hashed", spy)
    with no_data_warning():
        assert load_dataset("kmnist", data_dir=isolated / "d").classes[0] == "o"
    assert hashed == [False] * 4
    hashed.clear()
    register(monkeypatch, "mnist", content_digests(isolated / "d"))
    load_dataset("mnist", data_dir=isolated / "d")
    assert hashed == [True] * 4  # each file once


@needs_debian
def test_the_real_fashion_mnist_loads_silently_and_as_mnist_is_named():
    with no_data_warning():
        ds = load_dataset("fashion-mnist", data_dir=DEBIAN_FASHION)
    assert ds.name == "fashion-mnist" and len(ds.x_train) == 60000
    with pytest.warns(DataWarning, match="these are fashion-mnist's files, not mnist's"):
        load_dataset("mnist", data_dir=DEBIAN_FASHION)


# -- NMNP_DATA that is not a folder ---------------------------------------------------------


@pytest.mark.parametrize("kind, problem", [("missing", "does not exist"), ("file", "is a file, not a folder")])
def test_an_nmnp_data_that_is_no_folder_warns_and_the_search_goes_on(isolated, monkeypatch, kind, problem):
    target = isolated / "env"
    if kind == "file":
        target.write_bytes(b"x")
    write_tiny(isolated / "debian" / "mnist")
    register(monkeypatch, "mnist", content_digests(isolated / "debian" / "mnist"))
    monkeypatch.setenv("NMNP_DATA", str(target))
    with pytest.warns(DataWarning) as caught:
        ds = load_dataset("mnist")
    assert len(caught) == 1 and caught[0].filename == __file__
    assert str(caught[0].message).startswith(f"NMNP_DATA={target} {problem}; it is skipped")
    assert ds.source == str(isolated / "debian" / "mnist")
    with pytest.warns(DataWarning, match=f"NMNP_DATA={target} {problem}"):
        find_dataset_files("mnist")
    # Found nowhere: the error still lists NMNP_DATA among the places looked.
    with pytest.warns(DataWarning, match="NMNP_DATA"), pytest.raises(DataError, match=r"\(NMNP_DATA\): no such"):
        load_dataset("fashion-mnist")


def test_an_nmnp_data_folder_without_this_dataset_is_passed_over_silently(isolated, monkeypatch):
    (isolated / "env" / "fashion-mnist").mkdir(parents=True)  # holds another dataset only
    write_tiny(isolated / "debian" / "mnist")
    register(monkeypatch, "mnist", content_digests(isolated / "debian" / "mnist"))
    monkeypatch.setenv("NMNP_DATA", str(isolated / "env"))
    with no_data_warning():
        assert load_dataset("mnist").source == str(isolated / "debian" / "mnist")


# -- argument types -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["no", "False", 0, 1, None])
def test_download_must_be_a_bool(isolated, monkeypatch, bad):
    def no_network(*args, **kwargs):
        raise AssertionError("the network was tried")

    monkeypatch.setattr("nmnp.data.download.download_dataset", no_network)
    with pytest.raises(ConfigError, match=rf"download must be True or False, got {bad!r}\."):
        load_dataset("mnist", download=bad)
    with pytest.raises(DataError, match="was not found"):  # a NumPy bool is a bool
        load_dataset("mnist", download=np.bool_(False))


@pytest.mark.parametrize("bad", [3, b"/tmp", True, ["/tmp"]])
def test_data_dir_must_be_a_path(bad):
    with pytest.raises(ConfigError, match=r"data_dir must be a folder path \(str or os.PathLike\), got"):
        load_dataset("mnist", data_dir=bad)
    with pytest.raises(ConfigError, match="data_dir must be a folder path"):
        find_dataset_files("mnist", data_dir=bad)


def test_dataset_name_must_be_a_non_empty_string():
    x, y = np.zeros((4, 28, 28), np.uint8), np.arange(4)
    for bad in (3, None, b"mnist", ""):
        with pytest.raises(ConfigError, match=rf"Dataset name must be a non-empty string, got {bad!r}\."):
            Dataset(bad, x, y, x, y)


def test_dataset_classes_must_be_a_sequence_of_names_not_one_string():
    x, y = np.zeros((4, 28, 28), np.uint8), np.arange(4)
    with pytest.raises(ConfigError, match=r"classes must be a sequence of class names, one per label, "
                                          r"got the single string '0123'"):
        Dataset("t", x, y, x, y, classes="0123")
    with pytest.raises(ConfigError, match="classes must be a sequence of class names, got int"):
        Dataset("t", x, y, x, y, classes=10)
    with pytest.raises(ConfigError, match=r"class names must be strings, got 0 in \(0, 1, 2, 3\)"):
        Dataset("t", x, y, x, y, classes=range(4))
    with pytest.raises(ConfigError, match="classes is empty"):
        Dataset("t", x[:0], y[:0], x[:0], y[:0], classes=[])
    ds = Dataset("t", x, y, x, y, classes=["a", "b", "c", "d"])  # a list of names is fine
    assert ds.classes == ("a", "b", "c", "d") and ds.n_classes == 4
    assert Dataset("t", x, y, x, y, classes=np.array(list("abcd"))).classes == tuple("abcd")
