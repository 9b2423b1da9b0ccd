"""IDX reading and writing: round trips, exact byte layout, every error path, fuzzing."""

from __future__ import annotations

import gzip
import hashlib
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmnp.data import idx as idx_mod
from nmnp.data.idx import gunzip_bytes, read_idx, read_idx_bytes, read_idx_hashed, write_idx
from nmnp.errors import DataError, ShapeError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode independently of the library: header by hand, body big-endian."""
    codes = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
    code = codes[array.dtype.str[1:]]
    header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_every_dtype(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = write_idx(tmp_path / "a.idx", array, compress=compress)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress


def test_written_bytes_are_the_documented_layout(tmp_path):
    array = np.array([[1, -2, 300]], dtype=np.int16)
    write_idx(tmp_path / "a", array)
    assert (tmp_path / "a").read_bytes() == idx_bytes(array)
    assert idx_bytes(array)[:12] == bytes([0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 3])


def test_parses_hand_written_big_endian_file():
    data = bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + (258).to_bytes(4, "big") + (-1).to_bytes(4, "big", signed=True)
    np.testing.assert_array_equal(read_idx_bytes(data), np.array([258, -1], dtype=np.int32))


def test_gzip_detected_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    (tmp_path / "plain.gz").write_bytes(idx_bytes(array))  # misleading name, raw content
    (tmp_path / "packed.idx").write_bytes(gzip.compress(idx_bytes(array)))  # and the reverse
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "packed.idx"), array)


def test_multi_member_gzip_and_zero_padding_are_accepted():
    raw = idx_bytes(np.arange(10, dtype=np.uint8))
    two_members = gzip.compress(raw[:7]) + gzip.compress(raw[7:]) + b"\0" * 5
    np.testing.assert_array_equal(read_idx_bytes(two_members), np.arange(10))


def test_read_idx_hashed_hashes_the_decompressed_content_once(tmp_path):
    """The registry's digests are of the content, so a recompressed copy (Debian's) verifies."""
    array = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    raw = idx_bytes(array)
    (tmp_path / "a").write_bytes(raw)
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw, compresslevel=1))
    (tmp_path / "b.gz").write_bytes(gzip.compress(raw, compresslevel=9, mtime=12345))
    digest = hashlib.sha256(raw).hexdigest()
    for name in ("a", "a.gz", "b.gz"):
        got, hexdigest = read_idx_hashed(tmp_path / name)
        np.testing.assert_array_equal(got, array)
        assert hexdigest == digest, name
    assert read_idx_hashed(tmp_path / "a.gz", hash_content=False)[1] is None
    (tmp_path / "c").write_bytes(idx_bytes(array + 1))
    assert read_idx_hashed(tmp_path / "c")[1] != digest  # another content, another digest


def test_read_idx_hashed_fails_like_read_idx(tmp_path):
    with pytest.raises(DataError, match="nope.gz does not exist"):
        read_idx_hashed(tmp_path / "nope.gz")
    with pytest.raises(DataError, match="is a folder"):
        read_idx_hashed(tmp_path)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x08\x00\x08\x01")[:-3])
    with pytest.raises(DataError, match="bad.gz is a truncated gzip stream|bad.gz is not a valid gzip"):
        read_idx_hashed(tmp_path / "bad.gz")
    (tmp_path / "twice.gz").write_bytes(gzip.compress(gzip.compress(idx_bytes(np.zeros(3, np.uint8)))))
    with pytest.raises(DataError, match="wrong magic number"):  # decompressed once, as read_idx does
        read_idx_hashed(tmp_path / "twice.gz")
    with pytest.raises(DataError, match="wrong magic number"):
        read_idx(tmp_path / "twice.gz")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        read_idx(tmp_path / "nope.gz")
    assert "nope.gz" in str(info.value)


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        read_idx(tmp_path)


def test_wrong_magic_says_what_was_found():
    with pytest.raises(DataError, match="wrong magic number.*found 50 4b 03 04"):
        read_idx_bytes(b"PK\x03\x04" + b"\0" * 20, "x.zip")


def test_unsupported_dtype_code():
    with pytest.raises(DataError, match="unsupported element type code 0x0A"):
        read_idx_bytes(bytes([0, 0, 0x0A, 1, 0, 0, 0, 0]), "f")


def test_zero_dimensions_rejected():
    with pytest.raises(DataError, match="0 dimensions"):
        read_idx_bytes(bytes([0, 0, 0x08, 0]), "f")


def test_truncated_body_reports_expected_and_found_bytes():
    data = idx_bytes(np.zeros((2, 3), np.uint8))[:-2]
    with pytest.raises(DataError, match=r"truncated.*promises 18 bytes, found 16"):
        read_idx_bytes(data, "t")


def test_truncated_header():
    with pytest.raises(DataError, match="truncated.*needs 16 bytes, found 10"):
        read_idx_bytes(bytes([0, 0, 8, 3]) + b"\0" * 6, "t")
    with pytest.raises(DataError, match="truncated"):
        read_idx_bytes(b"\0\0", "t")


def test_trailing_garbage():
    with pytest.raises(DataError, match="3 bytes of trailing garbage"):
        read_idx_bytes(idx_bytes(np.zeros(4, np.uint8)) + b"abc", "g")


def test_huge_header_fails_without_allocating():
    # 4e9 x 4e9 x 4e9 float64 elements: the sizes are compared with the bytes present before
    # anything is allocated (NumPy reports its allocations to tracemalloc).
    import tracemalloc

    data = bytes([0, 0, 0x0E, 3]) + b"\xff\xff\xff\xff" * 3 + b"\0" * 64
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="truncated"):
            read_idx_bytes(data, "huge")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_corrupt_gzip_stream():
    packed = bytearray(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8))))
    packed[20] ^= 0xFF
    with pytest.raises(DataError, match="gzip"):
        read_idx_bytes(bytes(packed), "c.gz")


def test_truncated_gzip_stream():
    packed = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))
    with pytest.raises(DataError, match="truncated gzip"):
        read_idx_bytes(packed[:-10], "c.gz")


def test_gzip_followed_by_garbage():
    packed = gzip.compress(idx_bytes(np.arange(5, dtype=np.uint8)))
    with pytest.raises(DataError, match="trailing garbage after its gzip stream"):
        read_idx_bytes(packed + b"junk", "c.gz")


def test_gunzip_size_cap():
    packed = gzip.compress(b"\0" * 10_000)
    assert len(gunzip_bytes(packed, "z", max_bytes=10_000)) == 10_000
    with pytest.raises(DataError, match="more than the expected 9999 bytes"):
        gunzip_bytes(packed, "z", max_bytes=9_999)


def test_write_rejects_unsupported_arrays(tmp_path):
    with pytest.raises(ShapeError, match="int64"):
        write_idx(tmp_path / "a", np.zeros(3, np.int64))
    with pytest.raises(ShapeError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "a", np.array(3, np.uint8))
    assert not (tmp_path / "a").exists()


def test_write_into_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        write_idx(tmp_path / "no" / "a", np.zeros(3, np.uint8))


def test_write_is_atomic_when_the_disk_fails(tmp_path, monkeypatch):
    path = write_idx(tmp_path / "a", np.arange(4, dtype=np.uint8))
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(idx_mod.os, "fsync", broken_fsync)
    with pytest.raises(DataError, match="No space left"):
        write_idx(path, np.arange(100, dtype=np.uint8))
    assert path.read_bytes() == before  # old content intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no temp file left behind


def test_write_replaces_and_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_idx(tmp_path / "a", np.zeros(2, np.uint8))
        write_idx(tmp_path / "a", np.ones(3, np.uint8))
    finally:
        os.umask(old)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), np.ones(3))
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o644


def test_compressed_output_is_reproducible(tmp_path):
    array = np.random.default_rng(1).integers(0, 255, (50, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array, compress=True)
    first = (tmp_path / "a.gz").read_bytes()
    # No time stamp (bytes 4..7) and no flags such as an embedded file name (byte 3): the
    # same array gives the same bytes whenever and wherever it is written.
    assert first[3] == 0 and first[4:8] == b"\0\0\0\0"
    write_idx(tmp_path / "b.gz", array, compress=True)
    assert (tmp_path / "b.gz").read_bytes() == first


# -- fuzzing: damaged input either parses or raises DataError, nothing else, quickly --------

_VALID = [
    idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4)),
    idx_bytes(np.linspace(-1, 1, 6).astype(np.float32)),
]
_VALID += [gzip.compress(v) for v in _VALID]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_data_error(data: bytes) -> None:
    try:
        out = read_idx_bytes(data, "fuzz")
    except DataError:
        return
    assert isinstance(out, np.ndarray)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_parse_or_raise_data_error(data):
    _parse_or_data_error(data)


@FUZZ
@given(st.binary(max_size=64))
def test_random_bytes_behind_a_gzip_magic(data):
    _parse_or_data_error(b"\x1f\x8b" + data)


@FUZZ
@given(
    base=st.sampled_from(_VALID),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 10_000),
    extra=st.binary(max_size=8),
)
def test_mutated_files_parse_or_raise_data_error(base, edits, cut, extra):
    data = bytearray(base)
    for pos, value in edits:
        data[pos % len(data)] = value
    data = bytes(data[: max(cut, len(data) // 2)]) + extra
    _parse_or_data_error(data)
