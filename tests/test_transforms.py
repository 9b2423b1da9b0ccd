"""Rotation and normalisation: exact symmetries, the direction convention, PIL agreement."""

from __future__ import annotations

import numpy as np
import pytest

from nmnp.data.transforms import normalize, rotate_images
from nmnp.errors import ConfigError, ShapeError

RNG = np.random.default_rng(0)
IMGS = RNG.integers(0, 256, (6, 28, 28), dtype=np.uint8)  # no symmetry to hide a wrong turn


@pytest.mark.parametrize("interp", ["nearest", "bilinear"])
@pytest.mark.parametrize("angle", [0, 360, -720.0])
def test_full_turns_are_identity(angle, interp):
    out = rotate_images(IMGS, angle, interp)
    np.testing.assert_array_equal(out, IMGS)
    assert out is not IMGS


@pytest.mark.parametrize("interp", ["nearest", "bilinear"])
@pytest.mark.parametrize("angle, k", [(90, 1), (-90, -1), (270, -1), (180, 2), (450, 1)])
def test_right_angles_are_exact_rot90(angle, k, interp):
    np.testing.assert_array_equal(rotate_images(IMGS, angle, interp), np.rot90(IMGS, k, axes=(1, 2)))


def test_180_is_two_90s():
    twice = rotate_images(rotate_images(IMGS, 90), 90)
    np.testing.assert_array_equal(rotate_images(IMGS, 180), twice)


def test_positive_angle_turns_counter_clockwise_as_displayed():
    img = np.zeros((1, 9, 9), np.uint8)
    img[0, 4, 7] = 255  # right of the centre (4, 4)
    out = rotate_images(img, 90)
    assert out[0, 1, 4] == 255 and out.sum() == 255  # now above the centre (row 0 is the top)


def test_odd_angle_keeps_dtype_shape_and_input():
    before = IMGS.copy()
    for dtype in (np.uint8, np.int16, np.float32):
        for interp in ("nearest", "bilinear"):
            out = rotate_images(IMGS.astype(dtype), 33.0, interp)
            assert out.dtype == dtype and out.shape == IMGS.shape
    np.testing.assert_array_equal(IMGS, before)


def test_outside_is_black_and_centre_kept():
    white = np.full((1, 28, 28), 255, np.uint8)
    for interp in ("nearest", "bilinear"):
        out = rotate_images(white, 45, interp)[0]
        assert out[0, 0] == out[0, -1] == out[-1, 0] == out[-1, -1] == 0
        assert (out[10:18, 10:18] == 255).all()  # weights sum to 1: no rounding drift


def test_bilinear_composes_inside_a_central_disc():
    # A smooth image (wavelength ~14 px): bilinear resampling error is small there, so
    # rotating by a then b must match rotating by a + b away from the cut-off corners.
    h = w = 28
    yy, xx = np.mgrid[0:h, 0:w] - 13.5
    smooth = 0.5 + 0.25 * np.sin(xx / 2.3) * np.cos(yy / 2.9) + 0.2 * np.exp(-(xx**2 + yy**2) / 60)
    img = smooth[None].astype(np.float64)
    a, b = 17.0, 29.0
    two_steps = rotate_images(rotate_images(img, a, "bilinear"), b, "bilinear")[0]
    one_step = rotate_images(img, a + b, "bilinear")[0]
    disc = xx**2 + yy**2 <= 9.0**2
    err = np.abs(two_steps - one_step)[disc]
    assert err.max() < 0.03  # measured 0.011; the image spans about 0.26..0.91
    # and the test can fail: rotating by a + b + 8 degrees instead is clearly different
    assert np.abs(rotate_images(img, a + b + 8, "bilinear")[0] - two_steps)[disc].max() > 0.08


def test_bilinear_uint8_rounds_to_nearest():
    ramp = np.tile(np.arange(0, 28 * 9, 9, dtype=np.uint8), (28, 1))[None]  # 0, 9, 18, ...
    out = rotate_images(ramp, 30, "bilinear")
    exact = rotate_images(ramp.astype(np.float64), 30, "bilinear")
    np.testing.assert_array_equal(out, np.floor(exact + 0.5).astype(np.uint8))


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int32, np.uint32])
def test_bilinear_is_exact_for_integers_up_to_32_bits(dtype):
    # Random pixels over the whole range: blending in float32 would round 32-bit values
    # (24-bit mantissa), and the range's ends used to wrap around on the cast back.
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    img = rng.integers(info.min, info.max, size=(2, 9, 9), dtype=dtype, endpoint=True)
    img[:, 3:6, 3:6] = info.max
    img[1, 3:6, 3:6] = info.min
    out = rotate_images(img, 17, "bilinear")
    exact = rotate_images(img.astype(np.float64), 17, "bilinear")
    expected = np.clip(np.floor(exact + 0.5), info.min, info.max).astype(dtype)
    np.testing.assert_array_equal(out, expected)
    assert out[0, 4, 4] == info.max and out[1, 4, 4] == info.min


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_bilinear_keeps_64_bit_extremes_at_the_extremes(dtype):
    # float64 cannot hold 2**63 - 1 or 2**64 - 1; the result must stay within float64's
    # rounding of the extreme, not wrap to the other end of the range.
    info = np.iinfo(dtype)
    img = np.full((2, 7, 7), info.max, dtype=dtype)
    img[1] = info.min
    out = rotate_images(img, 10, "bilinear")
    top, bottom = int(out[0, 3, 3]), int(out[1, 3, 3])  # Python ints: no wrap-around here
    assert 0 <= info.max - top <= 2**12
    assert bottom == info.min


def test_invalid_arguments():
    with pytest.raises(ConfigError, match="interpolation"):
        rotate_images(IMGS, 10, "bicubic")
    with pytest.raises(ShapeError, match=r"\(N, H, W\)"):
        rotate_images(IMGS[0], 10)
    with pytest.raises(ShapeError):
        rotate_images(IMGS[None], 10)
    with pytest.raises(ConfigError, match="finite"):
        rotate_images(IMGS, float("nan"))


@pytest.fixture(scope="module")
def PIL():
    """Pillow's Image module, the independent oracle for rotation; only the two tests that
    compare with it are skipped without it (the library does not need it)."""
    return pytest.importorskip("PIL.Image", reason="Pillow not installed; the library does not need it")


@pytest.fixture(scope="module")
def real_images():
    from nmnp.data import load_dataset

    return load_dataset().x_test[:40]  # real garments: edges at every angle


@pytest.mark.parametrize("angle", [10, 30, 45, 73.5, 200, -20])
def test_nearest_matches_pil(angle, real_images, PIL):
    imgs = real_images
    ours = rotate_images(imgs, angle, "nearest")
    theirs = np.stack([np.asarray(PIL.fromarray(im).rotate(angle, resample=PIL.NEAREST)) for im in imgs])
    # Required: 99.9 % of pixels identical (the 16.16 fixed-point emulation gives 100 % with
    # the Pillow versions tried; the margin allows for a future Pillow change).
    assert (ours == theirs).mean() >= 0.999


@pytest.mark.parametrize("angle", [10, 45])
def test_bilinear_within_one_grey_level_of_pil(angle, PIL):
    # PIL truncates bilinear results to uint8 while nmnp rounds, so up to 1 level apart.
    imgs = IMGS
    ours = rotate_images(imgs, angle, "bilinear").astype(int)
    theirs = np.stack([np.asarray(PIL.fromarray(im).rotate(angle, resample=PIL.BILINEAR)) for im in imgs])
    assert np.abs(ours - theirs).max() <= 1


def test_normalize_uint8_and_float():
    x = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    out = normalize(x, 0.2, 0.5)
    assert out.dtype == np.float32 and out.shape == (1, 4)
    np.testing.assert_allclose(out[0], [(0 - 0.2) / 0.5, (1 - 0.2) / 0.5, 0.0, (0.4 - 0.2) / 0.5], atol=1e-6)
    xf = x.astype(np.float32) / 255
    np.testing.assert_allclose(normalize(xf, 0.2, 0.5), out, atol=1e-6)
    np.testing.assert_allclose(normalize(x.reshape(1, 4), 0.2, 0.5), out)


def test_normalize_invalid():
    with pytest.raises(ConfigError, match="std"):
        normalize(IMGS, 0.3, 0.0)
    with pytest.raises(ConfigError, match="mean"):
        normalize(IMGS, float("inf"), 1.0)
    with pytest.raises(ShapeError):
        normalize(IMGS[None], 0.3, 0.3)


@pytest.mark.parametrize("shape, d", [((0, 6, 6), 36), ((0, 5), 5)])
def test_normalize_empty_batch(shape, d):
    out = normalize(np.empty(shape, np.uint8), 0.5, 0.2)
    assert out.dtype == np.float32 and out.shape == (0, d)
    buf = np.empty((0, d), np.float32)
    assert normalize(np.empty(shape, np.float32), 0.5, 0.2, out=buf) is buf


@pytest.mark.parametrize("std", [1e-320, 5e-324, 1e-40, -1e-320])
def test_normalize_refuses_a_std_too_small_for_float32(std):
    with pytest.raises(ConfigError, match=r"normalize: std must be a finite number >= 1\.17"):
        normalize(IMGS, 0.3, std)


def test_normalize_refuses_coefficients_that_overflow_float32():
    with pytest.raises(ConfigError, match=r"normalize: mean / std .*overflows float32"):
        normalize(IMGS, 1e30, 1e-30)


@pytest.mark.parametrize("dtype, high, fits", [
    (np.float32, 1.0, 0.1),
    (np.float64, 1.0, 0.1),
    (np.uint8, 255, 25),
])
@pytest.mark.parametrize("into_out", [False, True])
def test_normalize_refuses_a_mean_and_std_that_overflow_float32(dtype, high, fits, into_out):
    # Pixels on the right scale, but a std this small makes 1 / std about 8.5e37, and the
    # shift mean / std about -3e38: their sum for a white pixel overflows float32.
    tiny = float(np.finfo(np.float32).tiny)
    x = np.array([[0, high], [0, 0]], dtype=dtype)
    out = np.empty(x.shape, np.float32) if into_out else None
    with pytest.raises(ShapeError, match=r"normalize: pixels as large as .* overflow float32 once standardised"):
        normalize(x, -3.5, tiny, out=out)
    # Smaller pixels fit and come out finite.
    x[0, 1] = fits
    assert np.all(np.isfinite(normalize(x, -3.5, tiny, out=out)))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_normalize_refuses_float_pixels_on_the_0_255_scale(dtype):
    """The audit's case: uint8 pixels cast to float without dividing by 255 came out 255 times
    too large, with no error."""
    img = np.random.default_rng(1).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    with pytest.raises(ShapeError, match=r"normalize: float pixels must be on the \[0, 1\] scale, got "
                       rf"{np.dtype(dtype)} pixels from 0 to 255; .*divide them by 255 first, or pass the uint8"):
        normalize(img.astype(dtype), 0.286, 0.353)
    out = np.empty((2, 784), np.float32)
    with pytest.raises(ShapeError, match="divide them by 255"):  # into an out array too
        normalize(img.astype(dtype), 0.286, 0.353, out=out)
    # Both suggested fixes give the same, right, answer.
    np.testing.assert_allclose(normalize(img.astype(dtype) / 255, 0.286, 0.353),
                               normalize(img, 0.286, 0.353), atol=2e-3 if dtype == np.float16 else 1e-6)


@pytest.mark.parametrize("pixels", [
    [0.0, 2.0],            # just another scale
    [-1.0, 1.0],           # the [-1, 1] scale
    [-0.8102, 2.0227],     # already standardised
    [0.5, 1.01],           # one pixel off by 1 %
    [-0.01, 0.5],
])  # fmt: skip
def test_normalize_refuses_any_float_pixels_off_the_unit_scale(pixels):
    x = np.array([pixels], dtype=np.float32)
    with pytest.raises(ShapeError, match=r"float pixels must be on the \[0, 1\] scale, got float32 pixels from"):
        normalize(x, 0.3, 0.3)


@pytest.mark.parametrize("pixels", [[0.0, 1.0], [0.0, 1.0005], [-0.0005, 0.9], [1.0, 1.0]])
def test_normalize_allows_float_rounding_just_outside_the_unit_scale(pixels):
    x = np.array([pixels], dtype=np.float64)
    np.testing.assert_allclose(normalize(x, 0.25, 0.5), (x - 0.25) / 0.5, rtol=1e-6)


def test_normalize_judges_the_scale_by_the_finite_pixels_only():
    # NaN and infinities pass through for the model's input check ...
    ok = np.array([[np.nan, np.inf, -np.inf, 0.5]], dtype=np.float32)
    out = normalize(ok, 0.5, 0.5)
    assert np.isnan(out[0, 0]) and out[0, 1] == np.inf and out[0, 2] == -np.inf and out[0, 3] == 0.0
    assert np.isnan(normalize(np.full((1, 3), np.nan, np.float32), 0.5, 0.5)).all()
    # ... and do not hide finite pixels on the wrong scale beside them.
    for non_finite in (np.nan, np.inf, -np.inf):
        with pytest.raises(ShapeError, match="got float32 pixels from 0 to 200"):
            normalize(np.array([[non_finite, 0.0, 200.0]], dtype=np.float32), 0.5, 0.5)


def test_normalize_passes_nan_and_inf_through_for_the_input_check():
    out = normalize(np.array([[np.nan, np.inf, 0.5]], dtype=np.float32), 0.5, 0.5)
    assert np.isnan(out[0, 0]) and out[0, 1] == np.inf and out[0, 2] == 0.0


def test_normalize_smallest_allowed_std_gives_finite_output():
    tiny = float(np.finfo(np.float32).tiny)
    out = normalize(IMGS, 0.0, tiny)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("arg", ["mean", "std"])
@pytest.mark.parametrize("bad", ["a", None, np.array([0.5, 0.5]), np.array(0.5), True, [0.5]])
def test_normalize_mean_and_std_must_be_real_numbers(arg, bad):
    kwargs = {"mean": 0.3, "std": 0.3, arg: bad}
    with pytest.raises(ConfigError, match=rf"normalize: {arg} must be a real number, got"):
        normalize(IMGS, **kwargs)


def test_normalize_accepts_numpy_scalars():
    np.testing.assert_array_equal(normalize(IMGS, np.float64(0.3), np.float64(0.4)), normalize(IMGS, 0.3, 0.4))
    np.testing.assert_array_equal(normalize(IMGS, np.int64(0), 1), normalize(IMGS, 0.0, 1.0))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16, np.uint16, np.uint32, np.int8])
def test_normalize_refuses_integer_pixels_other_than_uint8(dtype):
    # np.asarray on a list of pixel rows gives int64: it must not be taken as [0, 1] values.
    pixels = [[[0, 255], [51, 102]]] if dtype != np.int8 else [[[0, 127], [51, 102]]]
    x = np.asarray(pixels, dtype=dtype)
    with pytest.raises(ShapeError, match=rf"normalize needs uint8 pixels \(0\.\.255\) or floats in \[0, 1\], got dtype {np.dtype(dtype)}"):
        normalize(x, 0.2, 0.5)
    # Both suggested fixes give the same answer.
    np.testing.assert_allclose(
        normalize(x.astype(np.float32) / 255, 0.2, 0.5), normalize(x.astype(np.uint8), 0.2, 0.5), atol=1e-6
    )


@pytest.mark.parametrize("bad", ["10", True, np.bool_(True), False, None, [10], np.array(10.0), np.complex128(10)])
def test_rotate_images_refuses_angles_that_are_not_real_numbers(bad):
    """float() would take "10" (10 degrees) and True (1 degree): a typo, not an angle, as
    RotatedStream already said for its step."""
    with pytest.raises(ConfigError, match=r"degrees must be a number, got "):
        rotate_images(IMGS, bad)


@pytest.mark.parametrize("angle", [np.float32(30.0), np.float64(30.0), np.int64(30), 30])
def test_rotate_images_accepts_python_and_numpy_numbers(angle):
    np.testing.assert_array_equal(rotate_images(IMGS, angle), rotate_images(IMGS, 30.0))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), np.float32("-inf")])
def test_rotate_images_refuses_non_finite_angles(bad):
    with pytest.raises(ConfigError, match="degrees must be finite"):
        rotate_images(IMGS, bad)
