"""Image transforms for building tasks: rotation of a batch of images, and normalisation.

Rotation follows the convention of the imaging library the rotated-MNIST protocol was first
written with (PIL's ``Image.rotate``), so that task i of a rotated benchmark shows the same
pixels here as there:

* positive angles turn the image counter-clockwise *as displayed* (row 0 at the top);
* the centre of rotation is the image centre, ``((H - 1) / 2, (W - 1) / 2)`` in pixel-index
  coordinates (PIL's ``(W / 2, H / 2)`` in its continuous coordinates, where pixel centres
  sit at half-integers);
* output pixels whose source falls outside the image are 0 (black);
* the image keeps its shape (corners are cut off, nothing is enlarged).

It is implemented by *inverse mapping*: for each output pixel, where does it come from? For
one angle that map is the same for every image, so it is computed once, as a flat array of
source indices, and applied to the whole batch with one NumPy gather.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..errors import ConfigError, ShapeError

__all__ = ["rotate_images", "normalize", "INTERPOLATIONS"]

INTERPOLATIONS = ("nearest", "bilinear")

# Bilinear rotation works in float32 on blocks of this many images, so that the four
# gathered neighbour arrays stay a few tens of MB even for 60,000 images.
_BILINEAR_BLOCK = 4096

# Smallest std normalize accepts: float32's smallest normal number. 1 / std is then at most
# about 8.5e37, finite in float32 (a subnormal std such as 1e-320 made every output NaN).
_MIN_STD = float(np.finfo(np.float32).tiny)

# How far float pixels may stray outside [0, 1] (rounding in the caller's own arithmetic, e.g.
# a blend or a float16 cast) before normalize refuses them as being on another scale.
_SCALE_TOLERANCE = 1e-3


def _check_degrees(value, what: str, noun: str = "a number of degrees") -> float:
    """``value`` as a finite float, or ConfigError saying that ``what`` must be ``noun``.

    Only real numbers are accepted: ``float()`` would also take the string ``"10"`` and
    ``True`` (1 degree), which are a typo in a config file, not an angle.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{what} must be {noun}, got {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{what} must be finite, got {value}.")
    return value


def _rotation_terms(degrees: float) -> tuple[float, float]:
    """``(cos, sin)`` of the angle, rounded to 15 decimals as PIL does, so that multiples of
    90 degrees give exact 0 and +-1 and map pixels exactly onto pixels."""
    theta = math.radians(degrees % 360.0)
    return round(math.cos(theta), 15), round(math.sin(theta), 15)


def _source_coordinates(h: int, w: int, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Where each output pixel of a rotated (h, w) image is sampled, in index coordinates.

    Returns
    -------
    xs, ys : (h, w) float64
        Column and row (fractional) in the source image of every output pixel.

    Notes
    -----
    With :math:`\\theta` the angle, :math:`(c_x, c_y)` the centre and :math:`(x, y)` an
    output pixel (column, row; rows grow downwards),

    .. math::

        x_s = \\cos\\theta\\,(x - c_x) - \\sin\\theta\\,(y - c_y) + c_x, \\qquad
        y_s = \\sin\\theta\\,(x - c_x) + \\cos\\theta\\,(y - c_y) + c_y

    which is the inverse of a counter-clockwise turn on screen (the row axis points down).
    """
    cos_t, sin_t = _rotation_terms(degrees)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    dx, dy = cols - cx, rows - cy
    return cos_t * dx - sin_t * dy + cx, sin_t * dx + cos_t * dy + cy


def _nearest_indices(h: int, w: int, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Source pixel (row, column) of every output pixel for nearest-neighbour rotation.

    The map above is evaluated the way PIL's nearest-neighbour affine transform does it:
    in its continuous coordinates (pixel centres at ``i + 0.5``, centre ``(w/2, h/2)``), in
    16.16 fixed point, truncating to the containing pixel. Plain floating point would differ
    from PIL on about 1 % of the pixels at some angles (points within 1/65536 of a pixel
    edge, e.g. along the diagonals at 45 degrees); emulating the fixed point makes the
    rotated benchmark pixel-for-pixel the one defined with PIL.

    Returns
    -------
    iy, ix : (h, w) int64
        Source row and column; values outside ``0..h-1`` / ``0..w-1`` mean "outside".
    """
    cos_t, sin_t = _rotation_terms(degrees)
    # PIL's output -> input matrix for a counter-clockwise turn, about (w/2, h/2).
    a0, a1, a3, a4 = cos_t, -sin_t, sin_t, cos_t
    cx, cy = w / 2.0, h / 2.0
    a2 = a0 * -cx + a1 * -cy + cx
    a5 = a3 * -cx + a4 * -cy + cy

    def fix(v: float) -> int:  # to 16.16 fixed point, rounding to nearest
        return math.floor(v * 65536.0 + 0.5)

    f0, f1, f3, f4 = fix(a0), fix(a1), fix(a3), fix(a4)
    # Offsets of the first pixel's centre, (0.5, 0.5).
    f2 = fix(a2 + a0 * 0.5 + a1 * 0.5)
    f5 = fix(a5 + a3 * 0.5 + a4 * 0.5)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.int64)
    # Integer arithmetic, so summing per pixel equals PIL's running increments exactly;
    # floor division by 2**16 is its arithmetic right shift.
    ix = (f2 + cols * f0 + rows * f1) // 65536
    iy = (f5 + cols * f3 + rows * f4) // 65536
    return iy, ix


def _check_images(images: np.ndarray, func: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3:
        raise ShapeError(f"{func} needs a batch of images of shape (N, H, W), got shape {images.shape}.")
    if images.dtype.kind not in "uif":
        raise ShapeError(f"{func} needs integer or float pixels, got dtype {images.dtype}.")
    return images


def _working_dtype(dtype: np.dtype) -> type:
    """The float type bilinear blending is done in for pixels of ``dtype``.

    float32 holds every integer up to 2**24 exactly, so it serves uint8 and 16-bit pixels;
    32- and 64-bit integers and float64 pixels need float64 (exact up to 2**53).
    """
    wide = dtype == np.float64 or (dtype.kind in "ui" and dtype.itemsize > 2)
    return np.float64 if wide else np.float32


def _cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round (half up, as PIL does) and clip float results into an integer dtype."""
    if dtype.kind == "f":
        return values.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    # The clip bounds must themselves convert back into ``dtype``: a wide type's maximum
    # (2**63 - 1, say) rounds up to 2**63 as a float, which wraps to the minimum on the cast.
    high = values.dtype.type(info.max)
    if int(high) > info.max:
        high = np.nextafter(high, values.dtype.type(0))
    return np.clip(np.floor(values + 0.5), values.dtype.type(info.min), high).astype(dtype)


def rotate_images(images: np.ndarray, degrees: float, interpolation: str = "nearest") -> np.ndarray:
    """Rotate every image of a batch by the same angle.

    Parameters
    ----------
    images : (N, H, W) array, integer or float pixels
        Raw pixels (0..255 for uint8); rotation happens before any normalisation, so the
        black fill is true black.
    degrees : float
        Counter-clockwise angle as displayed. Any finite real number (Python or NumPy
        scalar; strings and bools are refused); it is taken modulo 360.
    interpolation : {"nearest", "bilinear"}
        ``"nearest"`` copies the source pixel containing the sampling point (the same
        choice as PIL's ``NEAREST``). ``"bilinear"`` blends the four neighbouring pixels;
        integer results are rounded to nearest (half up) and clipped to the dtype's range.
        The blend is exact for pixels of up to 32 bits; 64-bit integers beyond 2**53 come back
        rounded to float64's precision (a relative error of at most about 1e-16).

    Returns
    -------
    (N, H, W) array of the input's dtype
        A new array; the input is not modified.

    Raises
    ------
    ShapeError
        If ``images`` is not 3-D or not numeric.
    ConfigError
        If ``degrees`` is not a finite real number or ``interpolation`` is unknown.
    """
    images = _check_images(images, "rotate_images")
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(
            f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}."
        )
    degrees = _check_degrees(degrees, "degrees", "a number")
    if degrees % 360.0 == 0.0:
        return images.copy()

    n, h, w = images.shape
    flat = images.reshape(n, h * w)
    if interpolation == "nearest":
        iy, ix = _nearest_indices(h, w, degrees)
        inside = ((ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)).ravel()
        # np.take along axis 1 is about 3x faster than flat[:, src] for a (60000, 784) uint8
        # batch (measured once, during development). Outside points read pixel 0 (any valid
        # index) and are zeroed after.
        src = np.where(inside, (iy * w + ix).ravel(), 0)
        out = np.take(flat, src, axis=1)
        out[:, ~inside] = 0
        return out.reshape(n, h, w)

    xs, ys = _source_coordinates(h, w, degrees)
    out = np.zeros((n, h * w), dtype=images.dtype)
    # A sampling point counts as inside when it lies within the image's outer edge, i.e.
    # within half a pixel of the outermost pixel centres (PIL uses the same test).
    inside = ((xs >= -0.5) & (xs < w - 0.5) & (ys >= -0.5) & (ys < h - 0.5)).ravel()
    if not inside.any():
        return out.reshape(n, h, w)

    # Bilinear: the four neighbours of each sampling point, clamped to the border (so a point
    # between the last pixel centre and the edge repeats the edge pixel, as PIL does).
    x0 = np.floor(xs).ravel()[inside]
    y0 = np.floor(ys).ravel()[inside]
    fx = (xs.ravel()[inside] - x0).astype(np.float32)
    fy = (ys.ravel()[inside] - y0).astype(np.float32)
    x0 = x0.astype(np.intp)
    y0 = y0.astype(np.intp)
    xa, xb = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    ya, yb = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    corners = (ya * w + xa, ya * w + xb, yb * w + xa, yb * w + xb)
    weights = ((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy)
    work = _working_dtype(images.dtype)
    for start in range(0, n, _BILINEAR_BLOCK):
        block = flat[start : start + _BILINEAR_BLOCK]
        acc = np.zeros((len(block), len(x0)), dtype=work)
        for idx, wgt in zip(corners, weights):
            acc += np.take(block, idx, axis=1) * wgt.astype(work)
        out[start : start + _BILINEAR_BLOCK, inside] = _cast_like(acc, images.dtype)
    return out.reshape(n, h, w)


def normalize(images: np.ndarray, mean: float, std: float, out: np.ndarray | None = None) -> np.ndarray:
    """Flatten and standardise a batch of images: ``(x - mean) / std``.

    Parameters
    ----------
    images : (N, H, W) or (N, D) array, uint8 or float
        uint8 pixels (0..255) are first scaled to [0, 1] (divided by 255); float pixels must
        be on that [0, 1] scale already and are used as they are. Pixels on another scale are
        refused, since they would come out 255 times too large: other integer dtypes (int64
        pixels in 0..255 are what ``np.asarray`` makes of a list of rows), and float pixels
        outside [-0.001, 1.001] (the 0..255 scale as floats, or already standardised ones;
        the margin allows for rounding). NaN and infinite pixels are passed through, for the
        model's input check to report. ``mean`` and ``std`` are on the [0, 1]
        scale, as returned by :func:`nmnp.data.datasets.pixel_stats`. N may be 0.
    mean : float
        A finite real number (Python or NumPy scalar; bools refused).
    std : float
        A finite real number >= ``np.finfo(np.float32).tiny`` (about 1.18e-38), so that the
        float32 coefficients ``1 / std`` and ``mean / std`` are finite.
    out : (N, H * W) float32 array, optional
        Written in place and returned instead of a new array (C-contiguous and writeable).
        A stream fills one such array task after task: on some machines the page faults of
        a fresh 188 MB array cost more than the arithmetic.

    Returns
    -------
    (N, H * W) float32
        ``out`` when given.

    Raises
    ------
    ShapeError
        If ``images`` is not 2-D or 3-D, its pixels are neither uint8 nor float, or its
        finite float pixels are off the [0, 1] scale; or if ``out`` is not a writeable,
        C-contiguous float32 array of shape (N, H * W); or if a pixel overflows float32 once
        standardised (with a ``mean`` and ``std`` far outside pixel statistics).
    ConfigError
        If ``mean`` or ``std`` is not a real number, ``mean`` is not finite, ``std`` is not
        finite or below float32's smallest normal number, or ``mean / std`` overflows float32.
    """
    images = np.asarray(images)
    if images.ndim not in (2, 3):
        raise ShapeError(f"normalize needs images of shape (N, H, W) or (N, D), got shape {images.shape}.")
    if images.dtype != np.uint8 and images.dtype.kind != "f":
        raise ShapeError(
            "normalize needs uint8 pixels (0..255) or floats in [0, 1], got dtype "
            f"{images.dtype}; convert with .astype(np.uint8) or divide by 255 first."
        )
    if images.dtype.kind == "f":
        _check_unit_scale(images)
    mean, std = _real_arg("mean", mean), _real_arg("std", std)
    if not math.isfinite(mean):
        raise ConfigError(f"normalize: mean must be finite, got {mean}.")
    if not (math.isfinite(std) and std >= _MIN_STD):
        raise ConfigError(f"normalize: std must be a finite number >= {_MIN_STD:.6g}, got {std}.")
    scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0
    with np.errstate(over="ignore"):  # overflow to inf is refused just below
        factor, shift = np.float32(scale / std), np.float32(mean / std)
    if not np.isfinite(shift):
        raise ConfigError(
            f"normalize: mean / std = {mean / std:.3g} overflows float32 (mean={mean}, std={std})."
        )
    n = images.shape[0]
    flat = images.reshape(n, math.prod(images.shape[1:]))  # -1 cannot be inferred when N = 0
    if out is not None:
        _check_out(out, flat.shape, "normalize")
    # Float pixels far off the [0, 1] scale can overflow float32 in the cast or the scaling.
    # The floating-point overflow flag catches that without another pass over the data.
    try:
        with np.errstate(over="raise"):
            if out is None:
                out = flat.astype(np.float32)
            else:
                out[...] = flat  # the same conversion as astype
            # One multiply and one subtract, in place: (x * scale - mean) / std.
            out *= factor
            out -= shift
    except FloatingPointError:
        raise ShapeError(
            f"normalize: pixels as large as {np.nanmax(np.abs(flat)):.3g} overflow float32 once "
            f"standardised (mean={mean}, std={std}); mean and std must be pixel statistics on "
            "the [0, 1] scale, as pixel_stats returns."
        ) from None
    return out


def _check_unit_scale(images: np.ndarray) -> None:
    """ShapeError unless the finite values of the float array ``images`` lie in [0, 1], up to
    ``_SCALE_TOLERANCE``. NaN and infinities are left for the model's input check.

    Two reductions that allocate nothing (fmin/fmax skip NaN); only when one of them is
    infinite is the minimum or maximum taken again over the finite values alone.
    """
    if images.size == 0:
        return
    low, high = np.fmin.reduce(images, axis=None), np.fmax.reduce(images, axis=None)
    if not (np.isfinite(low) and np.isfinite(high)):
        finite = images[np.isfinite(images)]
        if finite.size == 0:
            return
        low, high = finite.min(), finite.max()
    low, high = float(low), float(high)
    if high > 1.0 + _SCALE_TOLERANCE or low < -_SCALE_TOLERANCE:
        hint = (
            "they look like 0..255 pixels: divide them by 255 first, or pass the uint8 pixels "
            "as they are"
            if low >= -_SCALE_TOLERANCE and high <= 255.0 + _SCALE_TOLERANCE
            else "pass the raw uint8 pixels (0..255), or float pixels divided by 255 into [0, 1]; "
            "images already standardised need no normalize"
        )
        raise ShapeError(
            f"normalize: float pixels must be on the [0, 1] scale, got {images.dtype} pixels "
            f"from {low:.6g} to {high:.6g}; {hint}."
        )


def _real_arg(name: str, value) -> float:
    """``value`` as a float, or ConfigError naming ``normalize``'s argument (bools, strings,
    None and arrays, 0-d included, are refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ConfigError(f"normalize: {name} must be a real number, got {value!r}.")
    return float(value)


def _check_out(out, shape: tuple, func: str) -> None:
    """ShapeError unless ``out`` is a writeable, C-contiguous float32 array of ``shape``."""
    if not isinstance(out, np.ndarray):
        raise ShapeError(f"{func}: out must be a NumPy array, got {type(out).__name__}.")
    problems = []
    if out.dtype != np.float32:
        problems.append(f"dtype {out.dtype}, not float32")
    if out.shape != tuple(shape):
        problems.append(f"shape {out.shape}, not {tuple(shape)}")
    if not out.flags.c_contiguous:
        problems.append("not C-contiguous")
    if not out.flags.writeable:
        problems.append("read-only")
    if problems:
        raise ShapeError(f"{func}: out has {', '.join(problems)}.")
