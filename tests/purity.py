"""A check that a backward pass is pure: the cs231n contract the layers and the loss keep."""

from __future__ import annotations

import numpy as np


def _snapshot(obj):
    """A deep copy of every array in ``obj`` (nested tuples, lists and dicts); anything else
    (a kernel module, a number) is kept as it is."""
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, dict):
        return {key: _snapshot(value) for key, value in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_snapshot(value) for value in obj)
    return obj


def _assert_same(received, expected, where: str) -> None:
    if isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(received, expected, err_msg=where)
    elif isinstance(expected, dict):
        assert received.keys() == expected.keys(), where
        for key in expected:
            _assert_same(received[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (tuple, list)):
        assert len(received) == len(expected), where
        for i, (r, e) in enumerate(zip(received, expected)):
            _assert_same(r, e, f"{where}[{i}]")
    else:
        assert received is expected or received == expected, where


def _arrays(obj, where: str):
    """(where, array) for every array in ``obj`` (nested tuples, lists and dicts)."""
    if isinstance(obj, np.ndarray):
        yield where, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _arrays(value, f"{where}[{key!r}]")
    elif isinstance(obj, (tuple, list)):
        for i, value in enumerate(obj):
            yield from _arrays(value, f"{where}[{i}]")


def assert_backward_is_pure(backward, upstream, cache) -> None:
    """``backward(upstream, cache)`` twice gives the same gradients, and leaves ``cache`` as
    it was: nothing is accumulated behind the caller's back.

    The first call's result is copied before the second call, so a backward that adds into
    a buffer it keeps and returns that buffer (both results then being one array, doubled)
    fails, as does one that writes into the cache. Every returned array must hold a non-zero
    value: a zero gradient accumulated twice is still zero, so that check could not fail.
    """
    cache_before = _snapshot(cache)
    first = _snapshot(backward(upstream, cache))
    for where, array in _arrays(first, "gradients"):
        assert array.any(), f"{where} is all zero: purity is untested, pick other inputs"
    second = backward(upstream, cache)
    _assert_same(second, first, "second call against the first")
    _assert_same(cache, cache_before, "the cache after two calls")
