"""The 20 corruptions of CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019), with CIFAR's constants.

The release's `make_cifar_c.py` uses other constants than the ImageNet-C script (which is
what the `imagecorruptions` package implements): every table below is the 32x32 one, five
severities each. LfF's `corrupted_cifar10_protocol.py`, which DeNetDM generates its data
with, uses the same functions and constants.

A corruption is `f(image, severity, rng) -> image`: a uint8 (H, W, 3) RGB image, a severity
in 1..5, and a `numpy.random.Generator` through which all of its randomness goes. Float
results are clipped to [0, 255] and truncated to uint8, as the reference's `np.uint8(...)`.

Where this differs from the reference, on purpose:

* Motion blur (and the snow layer's streaks) used ImageMagick's `MagickMotionBlurImage`
  through Wand. Here it is the same operation written out: a one-sided line kernel of
  `2*ceil(radius)+1` taps weighted `exp(-i^2 / (2 sigma^2))` (normalised), tap i reading
  the pixel `round(i * (cos a, sin a))` away, edge pixels repeated, the result rounded to
  uint8 as the PNG round trip did.
* Glass blur's pixel "swap" in the reference is a tuple assignment of numpy views, which
  copies the neighbour into the pixel and leaves the neighbour alone. That effective
  behaviour is kept, since it is what the released data set contains.
* Frost uses the original frost textures (frost1..frost6 of the release, byte-identical
  copies ship in the `imagecorruptions` wheel, which is read from disk and never
  imported). Like the reference, it draws among the first five only.
* Spatter's liquid layer is clipped to [0, 255] before its uint8 cast (the reference's
  cast of an out-of-range float is platform-defined; such values are vanishingly rare).
* Images other than 32x32 are accepted: sizes are taken from the image, the constants
  stay CIFAR's.

The random streams differ from the reference's global `np.random` calls, so outputs match
it in distribution, not bit for bit.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import math
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from ..errors import DataError

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

CORRUPTIONS: Dict[str, Corruption] = {}

# Class i gets corruption i (LfF's make_dataset.py).
TYPE0: List[str] = [
    "Snow", "Frost", "Fog", "Brightness", "Contrast", "Spatter", "Elastic", "JPEG", "Pixelate", "Saturate",
]
TYPE1: List[str] = [
    "Gaussian Noise", "Shot Noise", "Impulse Noise", "Speckle Noise", "Gaussian Blur",
    "Defocus Blur", "Glass Blur", "Motion Blur", "Zoom Blur", "Original",
]
TYPES: Dict[str, List[str]] = {"type0": TYPE0, "type1": TYPE1}

# The original textures (hendrycks/robustness ImageNet-C/create_c/), by SHA-256.
FROST_FILES: Dict[str, str] = {
    "frost1.png": "ff9f907860bd7a835d459e32f9d588062b7f61ee267343cc7222b56753a14755",
    "frost2.png": "fe211a89b336999c207a852ce05818d4545d0b57c5beadd824b4cc9d9a9b6137",
    "frost3.png": "2d0d50b4a9bb213f38b024ef7768731bb83cc08d2f26b5766bbc167cdfa0e504",
    "frost4.jpg": "3f8b91ca1a9fa7167b09e773da53f5ae60d0a1fd88f02a783f6e328a72887f6e",
    "frost5.jpg": "5fc6a19df4a429ba68abdcc8f8a4278d4c9f81c9ccafd2c92ab0c8cf8992ebd2",
    "frost6.jpg": "1f92b2f48408748085b68dd81d816ef239f42cef3029c25d041fcb6760fb4f25",
}
FROST_PACKAGE = "imagecorruptions"


def _register(name: str) -> Callable[[Callable], Corruption]:
    """Wrap a corruption: check the input, then clip and truncate its output to uint8."""

    def decorator(fn: Callable) -> Corruption:
        def corruption(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
            image = np.asarray(image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"{name}: expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
            if severity not in (1, 2, 3, 4, 5):
                raise ValueError(f"{name}: severity must be 1..5, got {severity!r}")
            out = np.asarray(fn(image, int(severity), rng))
            if out.dtype != np.uint8:
                out = np.clip(out, 0, 255).astype(np.uint8)
            assert out.shape == image.shape, (name, out.shape)
            out = np.ascontiguousarray(out)
            return out if out.flags.writeable else out.copy()  # PIL's arrays are read-only

        corruption.__name__ = fn.__name__
        corruption.__qualname__ = fn.__qualname__
        corruption.__doc__ = fn.__doc__
        CORRUPTIONS[name] = corruption
        return corruption

    return decorator


# ----------------------------------------------------------------------------- helpers


def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """`skimage.filters.gaussian` as the reference calls it: spatial axes only."""
    sigmas = (sigma, sigma) + (0.0,) * (x.ndim - 2)
    return ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def _clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the centre in by `factor` (bilinear) and crop back to the input size."""
    h, w = img.shape[:2]
    ch, cw = int(np.ceil(h / factor)), int(np.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    zoomed = ndimage.zoom(img[top : top + ch, left : left + cw], (factor, factor) + (1,) * (img.ndim - 2), order=1)
    trim_top, trim_left = (zoomed.shape[0] - h) // 2, (zoomed.shape[1] - w) // 2
    return zoomed[trim_top : trim_top + h, trim_left : trim_left + w]


def _plasma_fractal(rng: np.random.Generator, mapsize: int, wibbledecay: float) -> np.ndarray:
    """Diamond-square height map in [0, 1], (mapsize, mapsize), mapsize a power of two."""
    assert mapsize & (mapsize - 1) == 0
    heights = np.zeros((mapsize, mapsize))
    step, wibble = mapsize, 100.0
    while step >= 2:
        half = step // 2
        # The reference's "wibble * uniform(-wibble, wibble)": noise of scale wibble^2.
        noisy = lambda total: total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)  # noqa: E731
        corners = heights[0::step, 0::step]
        square = corners + np.roll(corners, -1, axis=0)
        square = square + np.roll(square, -1, axis=1)
        heights[half::step, half::step] = noisy(square)
        centres = heights[half::step, half::step]
        corners = heights[0::step, 0::step]
        left = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        heights[0::step, half::step] = noisy(left)
        top = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        heights[half::step, 0::step] = noisy(top)
        step //= 2
        wibble /= wibbledecay
    heights -= heights.min()
    return heights / heights.max()


def motion_blur_kernel(radius: float, sigma: float, angle: float):
    """ImageMagick's motion-blur line: tap weights and their (row, col) offsets.

    Tap i (0 = the pixel itself) lies `i` steps along the direction `angle` (degrees,
    columns to the right, rows down), rounded half down to the pixel grid.
    """
    width = int(2 * math.ceil(radius) + 1)
    taps = np.arange(width, dtype=np.float64)
    weights = np.exp(-(taps**2) / (2.0 * sigma * sigma))
    weights /= weights.sum()
    along_rows, along_cols = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
    norm = math.hypot(along_rows, along_cols)
    rows = np.ceil(taps * along_rows / norm - 0.5).astype(np.int64)
    cols = np.ceil(taps * along_cols / norm - 0.5).astype(np.int64)
    return weights, rows, cols


def _motion_blur(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """A uint8 image blurred along a line, edge pixels repeated; rounded to uint8."""
    weights, drows, dcols = motion_blur_kernel(radius, sigma, angle)
    h, w = x.shape[:2]
    src = x.astype(np.float64)
    out = np.zeros_like(src)
    for weight, dr, dc in zip(weights, drows, dcols):
        rows = np.clip(np.arange(h) + dr, 0, h - 1)
        cols = np.clip(np.arange(w) + dc, 0, w - 1)
        out += weight * src[rows[:, None], cols[None, :]]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] -> HSV in [0, 1] (skimage's convention)."""
    v = rgb.max(axis=-1)
    delta = v - rgb.min(axis=-1)
    safe = np.where(delta == 0, 1.0, delta)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    h = np.where(r == v, (g - b) / safe, 0.0)
    h = np.where(g == v, 2.0 + (b - r) / safe, h)
    h = np.where(b == v, 4.0 + (r - g) / safe, h)
    h = np.where(delta == 0, 0.0, (h / 6.0) % 1.0)
    s = np.where(v == 0, 0.0, delta / np.where(v == 0, 1.0, v))
    return np.stack([h, s, v], axis=-1)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    sector = sector.astype(np.int64) % 6
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = [np.stack(c, axis=-1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    out = np.empty(hsv.shape)
    for k, rgb in enumerate(choices):
        out[sector == k] = rgb[sector == k]
    return out


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    """The defocus kernel: an aliased disk, normalised, softened by a small Gaussian."""
    if radius <= 8:
        span, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        span, ksize = np.arange(-radius, radius + 1), (5, 5)
    xx, yy = np.meshgrid(span, span)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)


def frost_dir() -> Path:
    """Where the installed `imagecorruptions` keeps the frost textures (without importing it)."""
    spec = importlib.util.find_spec(FROST_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "frost"
        if folder.is_dir():
            return folder
    raise DataError(
        "the Frost corruption needs the original frost textures: pip install imagecorruptions "
        "(only its image files are used; --no-deps is enough)"
    )


@lru_cache(maxsize=None)
def frost_texture(index: int) -> np.ndarray:
    """Texture `index` (0-based) as RGB uint8, scaled by 0.2 as for CIFAR; checked by SHA-256."""
    name = list(FROST_FILES)[index]
    path = frost_dir() / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the frost texture {path} ({exc.strerror}); reinstall imagecorruptions") from None
    if hashlib.sha256(data).hexdigest() != FROST_FILES[name]:
        raise DataError(f"{path} is not the original frost texture {name}; reinstall imagecorruptions")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    bgr = cv2.resize(bgr, (0, 0), fx=0.2, fy=0.2)
    return np.ascontiguousarray(bgr[..., ::-1])


# ----------------------------------------------------------------------------- noise


@_register("Gaussian Noise")
def gaussian_noise(x, severity, rng):
    c = [0.04, 0.06, 0.08, 0.09, 0.10][severity - 1]
    x = x / 255.0
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


@_register("Shot Noise")
def shot_noise(x, severity, rng):
    c = [500, 250, 100, 75, 50][severity - 1]
    x = x / 255.0
    return np.clip(rng.poisson(x * c) / c, 0, 1) * 255


@_register("Impulse Noise")
def impulse_noise(x, severity, rng):
    """Salt and pepper per channel value (skimage's `random_noise(mode='s&p')`)."""
    amount = [0.01, 0.02, 0.03, 0.05, 0.07][severity - 1]
    x = x / 255.0
    flipped = rng.random(x.shape) < amount
    salted = rng.random(x.shape) < 0.5
    x[flipped & salted] = 1.0
    x[flipped & ~salted] = 0.0
    return x * 255


@_register("Speckle Noise")
def speckle_noise(x, severity, rng):
    c = [0.06, 0.1, 0.12, 0.16, 0.2][severity - 1]
    x = x / 255.0
    return np.clip(x + x * rng.normal(size=x.shape, scale=c), 0, 1) * 255


# ----------------------------------------------------------------------------- blur


@_register("Gaussian Blur")
def gaussian_blur(x, severity, rng):
    c = [0.4, 0.6, 0.7, 0.8, 1.0][severity - 1]
    return np.clip(_gaussian(x / 255.0, c), 0, 1) * 255


@_register("Glass Blur")
def glass_blur(x, severity, rng):
    """Blur, move pixels locally (each takes a neighbour's value), blur again."""
    sigma, delta, iterations = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][severity - 1]
    h, w = x.shape[:2]
    x = (np.clip(_gaussian(x / 255.0, sigma), 0, 1) * 255).astype(np.uint8)
    rows = np.arange(h - delta, delta, -1)
    cols = np.arange(w - delta, delta, -1)
    for _ in range(iterations):
        # One (dx, dy) per pixel, in the reference's visiting order (rows then columns, both
        # descending). With delta = 1 the offsets are in {-1, 0}, so every pixel reads one
        # that is visited later: a single gather from the image before the pass is exact.
        shift = rng.integers(-delta, delta, size=(len(rows), len(cols), 2))
        src_rows = rows[:, None] + shift[..., 1]
        src_cols = cols[None, :] + shift[..., 0]
        x[rows[:, None], cols[None, :]] = x[src_rows, src_cols]
    return np.clip(_gaussian(x / 255.0, sigma), 0, 1) * 255


@_register("Defocus Blur")
def defocus_blur(x, severity, rng):
    radius, alias_blur = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    kernel = _disk(radius, alias_blur)
    return np.clip(cv2.filter2D(x / 255.0, -1, kernel), 0, 1) * 255


@_register("Motion Blur")
def motion_blur(x, severity, rng):
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][severity - 1]
    return _motion_blur(x, radius, sigma, rng.uniform(-45, 45))


@_register("Zoom Blur")
def zoom_blur(x, severity, rng):
    # np.arange with these float bounds, as in the reference (7, 12, 16, 21 and 26 factors).
    factors = [
        np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
        np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01),
    ][severity - 1]
    x = (x / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    for factor in factors:
        out += _clipped_zoom(x, factor)
    return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


# ----------------------------------------------------------------------------- weather


@_register("Snow")
def snow(x, severity, rng):
    loc, scale, zoom, threshold, radius, sigma, keep = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ][severity - 1]
    h, w = x.shape[:2]
    x = x.astype(np.float32) / 255.0
    flakes = rng.normal(size=(h, w), loc=loc, scale=scale)
    flakes = _clipped_zoom(flakes[..., None], zoom)[..., 0]
    flakes[flakes < threshold] = 0
    flakes = (np.clip(flakes, 0, 1) * 255).astype(np.uint8)
    flakes = _motion_blur(flakes, radius, sigma, rng.uniform(-135, -45)) / 255.0
    flakes = flakes[..., None]
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(h, w, 1)
    x = keep * x + (1 - keep) * np.maximum(x, grey * 1.5 + 0.5)
    return np.clip(x + flakes + np.rot90(flakes, k=2), 0, 1) * 255


@_register("Frost")
def frost(x, severity, rng):
    """Blend with a random crop of one of the original frost textures (first five, as the reference)."""
    keep, amount = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][severity - 1]
    texture = frost_texture(int(rng.integers(5)))
    h, w = x.shape[:2]
    if texture.shape[0] <= h or texture.shape[1] <= w:  # only for images larger than CIFAR's
        scale = max((h + 1) / texture.shape[0], (w + 1) / texture.shape[1])
        texture = cv2.resize(texture, (math.ceil(texture.shape[1] * scale), math.ceil(texture.shape[0] * scale)))
    top = int(rng.integers(0, texture.shape[0] - h))
    left = int(rng.integers(0, texture.shape[1] - w))
    crop = texture[top : top + h, left : left + w]
    return np.clip(keep * x.astype(np.float64) + amount * crop, 0, 255)


@_register("Fog")
def fog(x, severity, rng):
    amount, decay = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][severity - 1]
    h, w = x.shape[:2]
    x = x / 255.0
    max_val = x.max()
    mapsize = max(32, 1 << (max(h, w) - 1).bit_length())
    x = x + amount * _plasma_fractal(rng, mapsize, decay)[:h, :w][..., None]
    return np.clip(x * max_val / (max_val + amount), 0, 1) * 255


@_register("Brightness")
def brightness(x, severity, rng):
    c = [0.05, 0.1, 0.15, 0.2, 0.3][severity - 1]
    hsv = _rgb_to_hsv(x / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(_hsv_to_rgb(hsv), 0, 1) * 255


@_register("Spatter")
def spatter(x, severity, rng):
    """Water splashes (severities 1-3) or mud (4-5)."""
    loc, scale, sigma, threshold, intensity, mud = [
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ][severity - 1]
    x = x.astype(np.float32) / 255.0
    liquid = rng.normal(size=x.shape[:2], loc=loc, scale=scale)
    liquid = _gaussian(liquid, sigma)
    liquid[liquid < threshold] = 0
    if not mud:
        liquid = (np.clip(liquid, 0, 1) * 255).astype(np.uint8)
        dist = 255 - cv2.Canny(liquid, 50, 150)
        dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
        dist = cv2.equalizeHist(dist)
        emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)
        dist = cv2.filter2D(dist, cv2.CV_8U, emboss)
        dist = cv2.blur(dist, (3, 3)).astype(np.float32)
        m = liquid.astype(np.float32) * dist
        peak = m.max()
        m = m / peak * intensity if peak > 0 else m
        water = np.array([175, 238, 238], dtype=np.float32) / 255.0  # pale turquoise
        return np.clip(x + m[..., None] * water, 0, 1) * 255
    m = _gaussian((liquid > threshold).astype(np.float32), intensity)
    m[m < 0.8] = 0
    mud_colour = np.array([63, 42, 20], dtype=np.float32) / 255.0
    return np.clip(x * (1 - m[..., None]) + mud_colour * m[..., None], 0, 1) * 255


# ----------------------------------------------------------------------------- digital


@_register("Contrast")
def contrast(x, severity, rng):
    c = [0.75, 0.5, 0.4, 0.3, 0.15][severity - 1]
    x = x / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


@_register("Elastic")
def elastic_transform(x, severity, rng):
    """A random affine warp, then a smooth random displacement field (constants scale 32)."""
    imsize = 32
    alpha, sigma, affine = [
        (imsize * 0, imsize * 0, imsize * 0.08),
        (imsize * 0.05, imsize * 0.2, imsize * 0.07),
        (imsize * 0.08, imsize * 0.06, imsize * 0.06),
        (imsize * 0.1, imsize * 0.04, imsize * 0.05),
        (imsize * 0.1, imsize * 0.03, imsize * 0.03),
    ][severity - 1]
    image = x.astype(np.float32) / 255.0
    h, w = image.shape[:2]
    centre = np.float32((h, w)) // 2
    side = min(h, w) // 3
    pts1 = np.float32([centre + side, [centre[0] + side, centre[1] - side], centre - side])
    pts2 = pts1 + rng.uniform(-affine, affine, size=pts1.shape).astype(np.float32)
    matrix = cv2.getAffineTransform(pts1, pts2)
    image = cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    dx = (_gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    dy = (_gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = [yy + dy, xx + dx]
    out = np.stack(
        [ndimage.map_coordinates(image[..., ch], coords, order=1, mode="reflect") for ch in range(image.shape[2])],
        axis=-1,
    )
    return np.clip(out, 0, 1) * 255


@_register("JPEG")
def jpeg_compression(x, severity, rng):
    quality = [80, 65, 58, 50, 40][severity - 1]
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


@_register("Pixelate")
def pixelate(x, severity, rng):
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    h, w = x.shape[:2]
    small = Image.fromarray(x).resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX))


@_register("Saturate")
def saturate(x, severity, rng):
    """Severities 1-2 desaturate, 3-5 saturate (CIFAR-10-C's own table)."""
    scale, shift = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][severity - 1]
    hsv = _rgb_to_hsv(x / 255.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + shift, 0, 1)
    return np.clip(_hsv_to_rgb(hsv), 0, 1) * 255


@_register("Original")
def original(x, severity, rng):
    """No corruption (Type1's tenth bias value)."""
    return x.copy()


# ----------------------------------------------------------------------------- batches


def corruption_names(corruption_type: str) -> List[str]:
    """The ten corruptions of `type0` or `type1`, in bias-label order."""
    try:
        return TYPES[corruption_type]
    except KeyError:
        raise ValueError(f"corruption type must be one of {', '.join(TYPES)}, got {corruption_type!r}") from None


def corrupt(
    images: np.ndarray,
    corruption_labels: Sequence[int],
    corruption_type: str = "type0",
    severity: int = 5,
    seed: Union[int, Sequence[int]] = 0,
    *,
    offset: int = 0,
    progress: bool = False,
    desc: Optional[str] = None,
) -> np.ndarray:
    """Image n gets corruption `corruption_names(corruption_type)[corruption_labels[n]]`.

    `images` is uint8 (N, H, W, 3). Image n draws from its own generator, seeded by
    `seed` and its index `offset + n`, so a batch corrupted in chunks (pass each chunk's
    offset) equals the batch corrupted at once.
    """
    names = corruption_names(corruption_type)
    images = np.asarray(images)
    labels = np.asarray(corruption_labels).astype(np.int64).reshape(-1)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} corruption labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
        raise ValueError(f"corruption labels must be in 0..{len(names) - 1}")
    entropy = np.random.SeedSequence(seed).entropy
    functions = [CORRUPTIONS[name] for name in names]
    out = np.empty_like(images)
    for n in tqdm(range(len(images)), desc=desc, unit="img", disable=not progress, leave=False, mininterval=0.5):
        rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(offset + n,)))
        out[n] = functions[labels[n]](images[n], severity, rng)
    return out
