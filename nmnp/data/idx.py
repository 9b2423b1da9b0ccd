"""Reading and writing IDX files, the format MNIST, Fashion-MNIST and KMNIST are published in.

An IDX file is a 4-byte magic number, one big-endian ``uint32`` per dimension, then the
elements in C order, big-endian::

    byte 0, 1   0x00 0x00
    byte 2      element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte 3      number of dimensions (1 for labels, 3 for images)
    then        ndim x uint32 sizes, then prod(sizes) elements

Files are often gzip-compressed. Compression is detected from the content (the gzip magic
bytes ``1f 8b``), not from the file name, because recompressed or renamed copies are common.

Everything here treats its input as untrusted: a damaged or hostile file raises
:class:`~nmnp.errors.DataError` naming the file and the problem, and a header that claims an
enormous array is rejected by comparing it with the bytes actually present, before anything
is allocated.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import secrets
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError, ShapeError

__all__ = ["read_idx", "read_idx_bytes", "read_idx_hashed", "write_idx", "gunzip_bytes", "GZIP_MAGIC"]

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian NumPy dtype. The format has no 64-bit integers.
_CODE_TO_DTYPE = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# (kind, itemsize) -> code; byte order is irrelevant when choosing the code for writing.
_KIND_TO_CODE = {(dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()}


def gunzip_bytes(data: bytes, name: str = "<bytes>", max_bytes: int | None = None) -> bytes:
    """Decompress a gzip stream held in memory.

    Parameters
    ----------
    data : bytes
        A complete gzip stream: one or more members, optionally followed by zero padding
        (both occur in the wild; anything else after the last member is an error).
    name : str
        What to call the data in error messages (usually the file name or URL).
    max_bytes : int, optional
        Refuse to produce more than this many bytes. Callers that know the expected size
        (the downloader does) use it so a hostile "gzip bomb" cannot exhaust memory.

    Returns
    -------
    bytes
        The decompressed content. zlib checks each member's CRC-32 and length trailer.

    Raises
    ------
    DataError
        If the stream is corrupt, truncated, followed by garbage, or too large.
    """
    parts: list[bytes] = []
    total = 0
    rest = bytes(data)
    while True:
        # wbits=31: gzip container (16) + 32 KiB window (15). Plain zlib is about 1.5x
        # faster than gzip.GzipFile (measured once, during development), which matters for a
        # 26 MB training-image file.
        inflater = zlib.decompressobj(wbits=31)
        # max_length=0 means "no limit"; one byte past the cap tells "at" from "over".
        limit = 0 if max_bytes is None else max_bytes + 1 - total
        try:
            part = inflater.decompress(rest, limit)
        except zlib.error as exc:
            raise DataError(f"{name} is not a valid gzip stream ({exc}).") from exc
        total += len(part)
        parts.append(part)
        if max_bytes is not None and (total > max_bytes or inflater.unconsumed_tail):
            raise DataError(f"{name} decompresses to more than the expected {max_bytes} bytes.")
        if not inflater.eof:
            raise DataError(f"{name} is a truncated gzip stream: it ends inside compressed data.")
        rest = inflater.unused_data
        if not rest.strip(b"\x00"):
            return b"".join(parts)
        if rest[:2] != GZIP_MAGIC:
            raise DataError(
                f"{name} has {len(rest)} bytes of trailing garbage after its gzip stream."
            )


def read_idx_bytes(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse an IDX file held in memory, gzip-compressed or not.

    Parameters
    ----------
    data : bytes
        The file's content.
    name : str
        What to call the data in error messages.

    Returns
    -------
    array : ndarray of shape ``dims`` from the header, native byte order, writeable
        e.g. ``(N, 28, 28) uint8`` for an image file, ``(N,) uint8`` for a label file.

    Raises
    ------
    DataError
        On a wrong magic number, an unsupported type code, a truncated body, trailing
        garbage or a corrupt gzip stream.
    """
    data = bytes(data)
    if data[:2] == GZIP_MAGIC:
        data = gunzip_bytes(data, name)
    return _parse_idx(data, name)


def _parse_idx(data: bytes, name: str) -> np.ndarray:
    """The array held in the uncompressed IDX bytes ``data`` (see :func:`read_idx_bytes`)."""
    if len(data) < 4:
        raise DataError(
            f"IDX file {name} is truncated: it has {len(data)} bytes, fewer than the 4-byte magic number."
        )
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"IDX file {name} has a wrong magic number: expected 00 00 <type> <ndim>, "
            f"found {data[:4].hex(' ')}."
        )
    if code not in _CODE_TO_DTYPE:
        known = ", ".join(f"0x{c:02X}" for c in _CODE_TO_DTYPE)
        raise DataError(f"IDX file {name} has unsupported element type code 0x{code:02X} (known: {known}).")
    if ndim == 0:
        raise DataError(f"IDX file {name} declares 0 dimensions; at least 1 is required.")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"IDX file {name} is truncated: its {ndim}-dimension header needs {header_len} bytes, "
            f"found {len(data)}."
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = _CODE_TO_DTYPE[code]
    # Python integers cannot overflow, so a header claiming 2**32 x 2**32 elements is
    # compared with the real length here and rejected without allocating anything.
    n_items = 1
    for d in dims:
        n_items *= d
    expected = header_len + n_items * dtype.itemsize
    if len(data) < expected:
        raise DataError(
            f"IDX file {name} is truncated: header {tuple(dims)} promises {expected} bytes, "
            f"found {len(data)}."
        )
    if len(data) > expected:
        raise DataError(
            f"IDX file {name} has {len(data) - expected} bytes of trailing garbage after the "
            f"{expected} bytes its header {tuple(dims)} describes."
        )
    flat = np.frombuffer(data, dtype=dtype, count=n_items, offset=header_len)
    # astype copies: the result is writeable, native-endian and does not pin `data`.
    return flat.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file from disk, gzip-compressed or not (detected from its content).

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    array : ndarray, shape given by the file's header (see :func:`read_idx_bytes`)

    Raises
    ------
    DataError
        If the file is missing or unreadable, or its content is not valid IDX.
    """
    return read_idx_hashed(path, hash_content=False)[0]


def read_idx_hashed(path: str | os.PathLike, hash_content: bool = True) -> tuple[np.ndarray, str | None]:
    """Read an IDX file from disk, as :func:`read_idx` does, and hash its content on the way.

    The SHA-256 is of the *decompressed* bytes (the digests the dataset registry holds), so
    a recompressed copy of a file has the same digest as the original. The file is read and
    decompressed once for both the array and the digest.

    Parameters
    ----------
    path : str or PathLike
    hash_content : bool
        Compute the digest; with False the second item is None and nothing is hashed.

    Returns
    -------
    array : ndarray
        As from :func:`read_idx`.
    sha256 : str or None
        Hexadecimal SHA-256 of the decompressed content.

    Raises
    ------
    DataError
        If the file is missing or unreadable, or its content is not valid IDX.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"IDX file {path} does not exist.")
    if path.is_dir():
        raise DataError(f"IDX path {path} is a folder, not a file.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"IDX file {path} cannot be read ({exc.strerror or exc}).") from exc
    if data[:2] == GZIP_MAGIC:
        data = gunzip_bytes(data, str(path))
    digest = hashlib.sha256(data).hexdigest() if hash_content else None
    return _parse_idx(data, str(path)), digest


def _encode(array: np.ndarray) -> bytes:
    """The IDX bytes (uncompressed) for ``array``; see :func:`write_idx`."""
    array = np.asarray(array)
    code = _KIND_TO_CODE.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ShapeError(
            f"write_idx cannot store dtype {array.dtype}; IDX supports uint8, int8, int16, "
            f"int32, float32 and float64."
        )
    if not 1 <= array.ndim <= 255:
        raise ShapeError(f"write_idx needs an array with 1 to 255 dimensions, got {array.ndim}.")
    if any(d >= 2**32 for d in array.shape):
        raise ShapeError(f"write_idx cannot store a dimension of 2**32 or more, got shape {array.shape}.")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()
    return header + body


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool = False) -> Path:
    """Write ``array`` as an IDX file, atomically.

    The bytes go to a temporary file in the destination folder, are flushed to disk
    (``fsync``), and only then renamed over ``path`` (``os.replace`` is atomic on one file
    system). A crash or a full disk therefore leaves either the old file or the new one,
    never a half-written file under the final name.

    Parameters
    ----------
    path : str or PathLike
        Destination file. Its folder must exist.
    array : ndarray, any shape with 1 to 255 dimensions
        dtype uint8, int8, int16, int32, float32 or float64.
    compress : bool
        Write a gzip stream (level 6, no time stamp or file name in the header, so the same
        array always produces the same bytes on the same zlib).

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ShapeError
        If the array's dtype or number of dimensions cannot be stored in IDX.
    DataError
        If the destination folder does not exist or cannot be written.
    """
    path = Path(path)
    payload = _encode(array)
    if compress:
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    folder = path.parent
    if not folder.is_dir():
        raise DataError(f"Cannot write IDX file {path}: folder {folder} does not exist.")
    tmp_name = None
    try:
        # os.open with mode 0o666 lets the umask decide the permissions, as for any new
        # file (tempfile.mkstemp would force 0o600 onto the final file).
        tmp_name = folder / f".{path.name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        raise DataError(f"Cannot write IDX file {path} ({exc.strerror or exc}).") from exc
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return path
