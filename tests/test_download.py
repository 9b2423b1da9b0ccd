"""Verified downloads against a local HTTP server: success, bad checksum, truncation,
mirror fallback, and offline use that never touches the network."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import re
import threading
import warnings
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from nmnp.data import datasets as ds_mod
from nmnp.data.datasets import ROLES, DatasetSpec, get_spec, load_dataset
from nmnp.data.download import download_dataset
from nmnp.data.idx import _encode, read_idx
from nmnp.errors import ConfigError, DataError, DataWarning

N_TRAIN, N_TEST = 20, 10
# The served files are tiny stand-ins under a real name: loading them rightly warns that they
# are not the full dataset (tests/test_datasets.py tests that warning).
pytestmark = pytest.mark.filterwarnings("ignore::nmnp.errors.DataWarning")

FILES = get_spec("mnist").files


def make_arrays(seed):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(N_TEST) % 10).astype(np.uint8),
    }


GOOD = make_arrays(0)
OTHER = make_arrays(1)  # valid IDX, same shapes, different pixels: only a checksum tells
RAW = {role: _encode(a) for role, a in GOOD.items()}
DIGESTS = {role: hashlib.sha256(raw).hexdigest() for role, raw in RAW.items()}


class Handler(BaseHTTPRequestHandler):
    """Routes: /good/, /other/ (wrong content), /short/ (truncated), /404/, /wrongshape/."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.hits.append(self.path)
        route, _, name = self.path.strip("/").partition("/")
        role = next((r for r, f in FILES.items() if f == name), None)
        if route == "404" or role is None:
            self.send_error(404)
            return
        arrays = {"other": OTHER, "wrongshape": make_arrays(2) | {"train_images": GOOD["train_images"][:19]}}
        body = gzip.compress(_encode(arrays.get(route, GOOD)[role]), mtime=0)
        self.send_response(200)
        # Truncated transfer: announce more than is sent, then close the connection.
        self.send_header("Content-Length", str(len(body) + (500 if route == "short" else 0)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if route == "short" else body)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.hits = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def tiny_spec(*mirrors, sha256=DIGESTS):
    return DatasetSpec(
        name="tiny", title="tiny", classes=tuple("abcdefghij"), n_train=N_TRAIN, n_test=N_TEST,
        mirrors=tuple(mirrors), sha256=dict(sha256),
    )  # fmt: skip


def no_network(*args, **kwargs):
    raise AssertionError("the network was used")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_success_then_offline(server, tmp_path):
    _, url = server
    paths = download_dataset(tiny_spec(url + "/good/"), cache_dir=tmp_path, progress=False)
    assert set(paths) == set(ROLES)
    for role in ROLES:
        assert paths[role].parent == tmp_path / "tiny" and paths[role].name == FILES[role]
        np.testing.assert_array_equal(read_idx(paths[role]), GOOD[role])
    assert leftovers(tmp_path / "tiny") == sorted(FILES.values())  # no temp files
    # Second call: all files present, the opener must not be called at all.
    again = download_dataset(tiny_spec(url + "/good/"), cache_dir=tmp_path, opener=no_network)
    assert again == paths


def test_wrong_checksum_leaves_no_file(server, tmp_path):
    _, url = server
    with pytest.raises(DataError, match=r"fails its checksum.*expected " + DIGESTS["train_images"]) as info:
        download_dataset(tiny_spec(url + "/other/"), cache_dir=tmp_path, progress=False)
    assert url + "/other/train-images-idx3-ubyte.gz" in str(info.value)
    assert leftovers(tmp_path / "tiny") == []


def test_truncated_transfer_leaves_no_file(server, tmp_path):
    _, url = server
    with pytest.raises(DataError, match=r"truncated: received \d+ of \d+ bytes"):
        download_dataset(tiny_spec(url + "/short/"), cache_dir=tmp_path, progress=False)
    assert leftovers(tmp_path / "tiny") == []


def test_falls_back_to_the_next_mirror(server, tmp_path):
    httpd, url = server
    httpd.hits.clear()
    spec = tiny_spec(url + "/404/", url + "/short/", url + "/good/")
    paths = download_dataset(spec, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(read_idx(paths["test_images"]), GOOD["test_images"])
    assert httpd.hits[:3] == [f"/{m}/train-images-idx3-ubyte.gz" for m in ("404", "short", "good")]


def test_all_mirrors_failing_names_each_url(server, tmp_path):
    _, url = server
    with pytest.raises(DataError) as info:
        download_dataset(tiny_spec(url + "/404/", "http://127.0.0.1:9/x/"), cache_dir=tmp_path, timeout=5, progress=False)
    msg = str(info.value)
    assert "any mirror" in msg and "HTTP 404" in msg
    assert url + "/404/train-images-idx3-ubyte.gz" in msg and "http://127.0.0.1:9/x/train-images-idx3-ubyte.gz" in msg


def test_without_digest_structure_and_counts_are_checked(server, tmp_path):
    _, url = server
    spec = tiny_spec(url + "/wrongshape/", sha256=dict.fromkeys(ROLES))
    with pytest.raises(DataError, match=r"uint8 \(19, 28, 28\), expected uint8 \(20, 28, 28\)"):
        download_dataset(spec, cache_dir=tmp_path, progress=False)
    # with no digest, other valid content of the right shape is accepted (nothing to compare)
    paths = download_dataset(tiny_spec(url + "/other/", sha256=dict.fromkeys(ROLES)), cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(read_idx(paths["train_images"]), OTHER["train_images"])


def test_overrides_by_parameter(server, tmp_path):
    _, url = server
    # mirrors= replaces the spec's mirrors, sha256= replaces its digests, role by role
    with pytest.raises(DataError, match="checksum"):
        download_dataset(tiny_spec("http://127.0.0.1:9/"), cache_dir=tmp_path, mirrors=[url + "/good/"],
                         sha256={"train_labels": "0" * 64}, progress=False)  # fmt: skip
    assert (tmp_path / "tiny" / FILES["train_images"]).is_file()  # verified before the bad one
    assert not (tmp_path / "tiny" / FILES["train_labels"]).exists()
    with pytest.raises(ConfigError, match="unknown roles"):
        download_dataset(tiny_spec(url), cache_dir=tmp_path / "x", sha256={"images": None})


def test_shipped_subset_has_nothing_to_download():
    with pytest.raises(ConfigError, match="nothing to download"):
        download_dataset("fashion-mnist-subset")


def test_load_dataset_offline_with_cached_files(tmp_path, monkeypatch):
    # Files already in the cache: load_dataset(download=True) must not open any URL.
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.delenv("NMNP_DATA", raising=False)
    monkeypatch.setenv("NMNP_CACHE", str(tmp_path))
    monkeypatch.setattr(ds_mod, "DEBIAN_ROOT", tmp_path / "no-debian")
    (tmp_path / "mnist").mkdir()
    for role, raw in RAW.items():
        (tmp_path / "mnist" / FILES[role]).write_bytes(gzip.compress(raw))
    ds = load_dataset("mnist", download=True)
    np.testing.assert_array_equal(ds.x_train, GOOD["train_images"])
    # and with the cache empty, download=True does try the network (so the guard is real)
    for p in (tmp_path / "mnist").iterdir():
        p.unlink()
    with pytest.raises(AssertionError, match="network was used"):
        load_dataset("mnist", download=True)


def test_a_verified_download_then_loads_without_a_content_warning(server, tmp_path, monkeypatch):
    """load_dataset hashes the files it reads against the same registry digests the download
    was verified with: a good download loads silently, a cached file changed since warns."""
    _, url = server
    monkeypatch.delenv("NMNP_DATA", raising=False)
    monkeypatch.setenv("NMNP_CACHE", str(tmp_path))
    monkeypatch.setattr(ds_mod, "DEBIAN_ROOT", tmp_path / "no-debian")
    monkeypatch.setattr(ds_mod, "REGISTRY", {**ds_mod.REGISTRY, "mnist": dataclasses.replace(
        get_spec("mnist"), n_train=N_TRAIN, n_test=N_TEST, mirrors=(url + "/good/",), sha256=DIGESTS)})
    with warnings.catch_warnings():  # not a filterwarnings mark: this module's "ignore" would win
        warnings.simplefilter("error", DataWarning)
        ds = load_dataset("mnist", download=True)
    np.testing.assert_array_equal(ds.x_test, GOOD["test_images"])
    (tmp_path / "mnist" / FILES["test_images"]).write_bytes(gzip.compress(_encode(OTHER["test_images"])))
    with pytest.warns(DataWarning, match=rf"{FILES['test_images']} \(SHA-256 [0-9a-f]{{16}}\) is no registered"):
        load_dataset("mnist", download=True)


# -- the registry's download data ----------------------------------------------------------


def test_registry_mirrors_and_digests_are_well_formed():
    for name in ("fashion-mnist", "mnist", "kmnist"):
        spec = get_spec(name)
        assert len(spec.mirrors) >= 2 and all(re.fullmatch(r"https?://[^/]+/(.*/)?", m) for m in spec.mirrors)
        assert (spec.n_train, spec.n_test) == (60000, 10000)
        for role in ROLES:
            digest = spec.sha256[role]
            assert digest is None or re.fullmatch(r"[0-9a-f]{64}", digest)
    assert all(get_spec("fashion-mnist").sha256.values()) and all(get_spec("mnist").sha256.values())
    assert not any(get_spec("kmnist").sha256.values())  # none published: structure checks only


def test_no_two_registered_files_share_a_digest():
    """A folder's files are named as another dataset's by their digests: each must be one file's."""
    digests = [d for spec in ds_mod.REGISTRY.values() for d in spec.sha256.values() if d]
    assert len(digests) == 12 and len(set(digests)) == len(digests)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="no Debian Fashion-MNIST")
def test_fashion_digests_match_the_debian_files():
    spec = get_spec("fashion-mnist")
    for role in ("train_labels", "test_labels", "test_images"):  # the 47 MB file is skipped for speed
        raw = gzip.decompress(Path("/usr/share/datasets/fashion-mnist", spec.files[role]).read_bytes())
        assert hashlib.sha256(raw).hexdigest() == spec.sha256[role]
