"""Optional, verified download of MNIST-format datasets into a local cache.

Nothing here runs unless asked for (``load_dataset(..., download=True)`` or
:func:`download_dataset`); the library works offline with the shipped subset or files
already on disk, and files already in the cache are used without touching the network.

Each file is fetched from the dataset's mirrors in order (the registry in
:mod:`nmnp.data.datasets` lists them) until one delivers a file that verifies:

1. the transfer is complete (as many bytes as the server announced);
2. the gzip stream is intact and not larger than the dataset's files can be;
3. the SHA-256 of the *decompressed* content matches the registry, when the registry has a
   digest (a recompressed copy, such as Debian's, has different ``.gz`` bytes but the same
   content, so hashing the content is what identifies the data);
4. the IDX structure holds the expected shape (e.g. 60000 x 28 x 28 uint8) and labels 0..9.
   For datasets without a published digest (KMNIST) this is the only check.

The file is written to a temporary name in the cache folder and renamed into place only
after it verified, so an interrupted or corrupt download never looks like a cached file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError, DataError
from .datasets import ROLES, DatasetSpec, dataset_files_in, default_cache_dir, get_spec
from .idx import GZIP_MAGIC, gunzip_bytes, read_idx_bytes

__all__ = ["download_dataset", "verify_content", "DEFAULT_TIMEOUT"]

#: Seconds to wait for a server to answer or send more data.
DEFAULT_TIMEOUT = 30.0

_CHUNK = 1 << 16
_USER_AGENT = "nmnp-dataset-downloader/0.1 (+urllib)"

Opener = Callable[..., object]


def _raw_size(spec: DatasetSpec, role: str) -> int:
    """Exact size in bytes of the uncompressed IDX file for ``role``."""
    shape = spec.expected_shape(role)
    n_items = int(np.prod(shape))
    return 4 + 4 * len(shape) + n_items  # uint8 elements


def verify_content(data: bytes, spec: DatasetSpec, role: str, digest: str | None, name: str) -> np.ndarray:
    """Check one downloaded file; return its array if it is the file the registry describes.

    Parameters
    ----------
    data : bytes
        The file as received (gzip or not).
    spec : DatasetSpec
    role : str
        One of ``"train_images"``, ``"train_labels"``, ``"test_images"``, ``"test_labels"``.
    digest : str or None
        Expected SHA-256 (hex) of the decompressed content; ``None`` skips this check.
    name : str
        What to call the file in errors (its URL).

    Returns
    -------
    ndarray
        The parsed content, shape ``spec.expected_shape(role)``, uint8.

    Raises
    ------
    DataError
        If any check fails; the message says which and names the file.
    """
    expected_size = _raw_size(spec, role)
    raw = gunzip_bytes(data, name, max_bytes=expected_size) if data[:2] == GZIP_MAGIC else data
    if digest is not None:
        got = hashlib.sha256(raw).hexdigest()
        if got != digest.lower():
            raise DataError(f"{name} fails its checksum: SHA-256 of the content is {got}, expected {digest}.")
    array = read_idx_bytes(raw, name)
    expected_shape = spec.expected_shape(role)
    if array.shape != expected_shape or array.dtype != np.uint8:
        raise DataError(
            f"{name} holds {array.dtype} {array.shape}, expected uint8 {expected_shape} "
            f"for {spec.name} {role}."
        )
    if role.endswith("labels") and array.size and int(array.max()) >= len(spec.classes):
        raise DataError(f"{name} has label {int(array.max())}, outside 0..{len(spec.classes) - 1}.")
    return array


def _fetch(
    url: str, dest_tmp: Path, *, timeout: float, opener: Opener, progress: bool, max_bytes: int
) -> None:
    """Stream ``url`` into ``dest_tmp``; raise DataError unless every announced byte arrived."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with opener(request, timeout=timeout) as response:
            status = getattr(response, "status", 200)
            if status != 200:
                raise DataError(f"Download of {url} failed: HTTP status {status}.")
            header = response.headers.get("Content-Length") if response.headers else None
            announced = int(header) if header and header.strip().isdigit() else None
            if announced is not None and announced > max_bytes:
                raise DataError(
                    f"Download of {url} refused: it announces {announced} bytes, more than "
                    f"the {max_bytes} the file can need."
                )
            received = 0
            with open(dest_tmp, "wb") as fh, tqdm(
                total=announced, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                disable=not progress, leave=False,
            ) as bar:  # fmt: skip
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > max_bytes:
                        raise DataError(f"Download of {url} stopped: more than {max_bytes} bytes received.")
                    fh.write(chunk)
                    bar.update(len(chunk))
                fh.flush()
                os.fsync(fh.fileno())
    except DataError:
        raise
    except urllib.error.HTTPError as exc:
        raise DataError(f"Download of {url} failed: HTTP {exc.code} {exc.reason}.") from exc
    except urllib.error.URLError as exc:
        raise DataError(f"Download of {url} failed: {exc.reason}.") from exc
    except (http.client.HTTPException, OSError, ValueError) as exc:
        raise DataError(f"Download of {url} failed: {type(exc).__name__}: {exc}.") from exc
    # http.client returns b"" rather than raising when a server closes early, so the
    # byte count is the only reliable sign of a truncated transfer.
    if announced is not None and received != announced:
        raise DataError(f"Download of {url} is truncated: received {received} of {announced} bytes.")


def _download_one(
    spec: DatasetSpec, role: str, folder: Path, mirrors: tuple[str, ...], digest: str | None,
    *, timeout: float, opener: Opener, progress: bool,
) -> Path:  # fmt: skip
    file_name = spec.files[role]
    # A gzip file is never much larger than its content; this bounds a misbehaving server.
    max_bytes = _raw_size(spec, role) + _raw_size(spec, role) // 100 + (1 << 16)
    failures = []
    for mirror in mirrors:
        url = mirror if mirror.endswith(file_name) else mirror.rstrip("/") + "/" + file_name
        tmp = folder / f".{file_name}.{secrets.token_hex(8)}.part"
        try:
            _fetch(url, tmp, timeout=timeout, opener=opener, progress=progress, max_bytes=max_bytes)
            data = tmp.read_bytes()
            verify_content(data, spec, role, digest, url)
            # A mirror serving the file uncompressed gets its plain name, so the name never
            # claims a compression the content does not have.
            final = folder / (file_name if data[:2] == GZIP_MAGIC else file_name.removesuffix(".gz"))
            os.replace(tmp, final)
            return final
        except DataError as exc:
            failures.append(str(exc))
        except OSError as exc:  # the cache folder itself (disk full, permissions)
            failures.append(f"Cannot write the download of {url} into {folder} ({exc.strerror or exc}).")
        finally:
            if tmp.exists():
                tmp.unlink()
    if not mirrors:
        failures.append("no mirror is configured")
    raise DataError(
        f"Could not download {file_name} of {spec.name!r} from any mirror: " + " | ".join(failures)
    )


def download_dataset(
    dataset: str | DatasetSpec,
    cache_dir: str | os.PathLike | None = None,
    *,
    mirrors: tuple[str, ...] | list[str] | None = None,
    sha256: Mapping[str, str | None] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    opener: Opener | None = None,
    progress: bool | None = None,
) -> dict[str, Path]:
    """Make sure a dataset's four files are in the cache, downloading the missing ones.

    Parameters
    ----------
    dataset : str or DatasetSpec
        A registered name (``"fashion-mnist"``, ``"mnist"``, ``"kmnist"``), or a
        :class:`~nmnp.data.datasets.DatasetSpec` describing another MNIST-format dataset.
    cache_dir : path, optional
        Cache root; files go to ``cache_dir / <name>``. Default :func:`default_cache_dir`.
    mirrors : sequence of str, optional
        Base URLs to try in order, replacing the registry's.
    sha256 : mapping role -> str or None, optional
        Digests of the decompressed files, replacing the registry's for the roles given.
    timeout : float
        Seconds to wait for a connection or for more data.
    opener : callable, optional
        ``opener(request, timeout=...)`` returning a response (default
        ``urllib.request.urlopen``). Tests pass one that fails, to prove no network use.
    progress : bool, optional
        Show a tqdm progress bar; default: only when stderr is a terminal.

    Returns
    -------
    dict role -> Path
        The cached files.

    Raises
    ------
    ConfigError
        If the dataset is unknown or is the shipped subset (nothing to download).
    DataError
        If a file cannot be obtained from any mirror (the message lists each URL and why)
        or the cache folder cannot be created.
    """
    spec = get_spec(dataset)
    if spec.shipped:
        raise ConfigError(f"Dataset {spec.name!r} ships with nmnp; there is nothing to download.")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}.")
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = folder / spec.name
    found, missing = dataset_files_in(folder, spec) if folder.is_dir() else ({}, list(ROLES))
    if not missing:
        return found  # offline: everything is already here
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"Cannot create the download cache folder {folder} ({exc.strerror or exc}).") from exc

    mirror_list = tuple(spec.mirrors if mirrors is None else mirrors)
    digests = dict(spec.sha256)
    if sha256 is not None:
        unknown = set(sha256) - set(ROLES)
        if unknown:
            raise ConfigError(f"sha256 has unknown roles {sorted(unknown)}; roles are {', '.join(ROLES)}.")
        digests.update(sha256)
    if opener is None:
        opener = urllib.request.urlopen
    if progress is None:
        progress = sys.stderr.isatty()

    paths = dict(found)
    for role in ROLES:
        if role not in paths:
            paths[role] = _download_one(
                spec, role, folder, mirror_list, digests.get(role),
                timeout=float(timeout), opener=opener, progress=progress,
            )  # fmt: skip
    return paths
