"""BSRGAN-style random degradation ``d(x)`` for the extended DDPM training of DifFIQA.

After Zhang et al., "Designing a Practical Degradation Model for Deep Blind Image
Super-Resolution" (ICCV 2021), re-implemented for 112x112 aligned faces with numpy + OpenCV:
a random permutation of

- two blur operations (each applied with probability ``p_blur``): an isotropic Gaussian kernel,
  or an anisotropic one (random eigen-sigmas and rotation);
- a down-sampling by a factor in ``[1, max_down]`` with a random interpolation (area, linear,
  cubic); the image stays small until the end, so noise and JPEG added later act at the low
  resolution, as in BSRGAN;
- Gaussian noise (colour, grey, or channel-correlated; sigma in ``[2, 25] / 255``);
- Poisson (shot) noise with probability ``p_poisson``;
- JPEG compression with probability ``p_jpeg`` (quality in ``[30, 95]``);

then a final JPEG (always, as BSRGAN does) and an up-sampling back to the input size with a
random interpolation (nearest, linear, cubic). Everything is drawn from the numpy ``Generator``
passed in, so a given seed gives the same degraded image.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import InvalidImageError

_DOWN_INTERP = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)
_UP_INTERP = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC)


def gaussian_kernel(sigma_x: float, sigma_y: float, theta: float, size: int | None = None) -> np.ndarray:
    """Normalised anisotropic Gaussian kernel (``sigma_x == sigma_y``: isotropic), float64.

    ``theta`` rotates the ``x`` axis (radians); ``size`` defaults to ``2 ceil(3 max sigma) + 1``.
    """
    if size is None:
        size = 2 * int(np.ceil(3 * max(sigma_x, sigma_y))) + 1
    r = (size - 1) / 2.0
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return k / k.sum()


def random_blur_kernel(rng: np.random.Generator, max_sigma: float = 2.5, scale: float = 1.0) -> np.ndarray:
    """Half of the time isotropic, half anisotropic; sigmas drawn in ``[0.1, max_sigma]`` pixels
    and multiplied by ``scale`` (the current image size over the input size)."""
    if rng.random() < 0.5:
        s = rng.uniform(0.1, max_sigma) * scale
        return gaussian_kernel(s, s, 0.0)
    sx, sy = rng.uniform(0.1, max_sigma, size=2) * scale
    return gaussian_kernel(sx, sy, rng.uniform(0, np.pi))


def _blur(img: np.ndarray, rng: np.random.Generator, max_sigma: float, scale: float) -> np.ndarray:
    k = random_blur_kernel(rng, max_sigma, scale)
    return cv2.filter2D(img, -1, k.astype(np.float32), borderType=cv2.BORDER_REFLECT)


def _downsample(img: np.ndarray, rng: np.random.Generator, max_down: float) -> np.ndarray:
    f = rng.uniform(1.0, max_down)
    h, w = img.shape[:2]
    size = (max(int(round(w / f)), 8), max(int(round(h / f)), 8))
    return cv2.resize(img, size, interpolation=int(rng.choice(_DOWN_INTERP)))


def _gaussian_noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    level = rng.uniform(2, 25) / 255.0
    r = rng.random()
    if r < 0.4:  # colour noise
        noise = rng.normal(0, level, img.shape)
    elif r < 0.8:  # grey noise
        noise = np.repeat(rng.normal(0, level, img.shape[:2] + (1,)), 3, axis=2)
    else:  # channel-correlated noise (random covariance)
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        noise = (rng.normal(0, level, img.shape) * np.sqrt(rng.random(3))) @ q.T
    return np.clip(img + noise.astype(np.float32), 0, 1)


def _poisson_noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    vals = 10 ** rng.uniform(2.0, 4.0)  # photons per unit intensity
    if rng.random() < 0.5:
        out = rng.poisson(np.clip(img, 0, 1) * vals) / vals
    else:
        grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
        out = img + (rng.poisson(np.clip(grey, 0, 1) * vals) / vals - grey)[..., None]
    return np.clip(out, 0, 1).astype(np.float32)


def _jpeg(img: np.ndarray, rng: np.random.Generator, qmin: int = 30, qmax: int = 95) -> np.ndarray:
    q = int(rng.integers(qmin, qmax + 1))
    u8 = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), q])  # RGB -> BGR
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0


def degrade(
    img: np.ndarray,
    rng: np.random.Generator | int | None = None,
    *,
    max_down: float = 4.0,
    max_sigma: float = 2.5,
    p_blur: float = 0.75,
    p_poisson: float = 0.2,
    p_jpeg: float = 0.9,
) -> np.ndarray:
    """One random BSRGAN-style degradation of an RGB image.

    Parameters
    ----------
    img : ndarray, (H, W, 3)
        uint8 RGB, or float RGB in [0, 1]. The output has the same shape and dtype.
    rng : numpy Generator or seed
        Source of every random choice (same seed -> same output).
    max_down : float
        Largest down-sampling factor (drawn uniformly from ``[1, max_down]``).
    max_sigma : float
        Largest blur sigma, in pixels of the input resolution (a blur applied after the
        down-sampling is scaled down with the image).
    """
    rng = np.random.default_rng(rng)
    if img.ndim != 3 or img.shape[2] != 3:
        raise InvalidImageError(f"degrade() takes an (H, W, 3) RGB image, got shape {img.shape}")
    is_u8 = img.dtype == np.uint8
    x = img.astype(np.float32) / 255.0 if is_u8 else np.clip(img.astype(np.float32), 0, 1)
    h, w = x.shape[:2]
    for op in rng.permutation(6):
        if op in (0, 1):
            if rng.random() < p_blur:
                x = _blur(x, rng, max_sigma, x.shape[1] / w)
        elif op == 2:
            x = _downsample(x, rng, max_down)
        elif op == 3:
            x = _gaussian_noise(x, rng)
        elif op == 4:
            if rng.random() < p_poisson:
                x = _poisson_noise(x, rng)
        elif op == 5:
            if rng.random() < p_jpeg:
                x = _jpeg(x, rng)
    x = _jpeg(x, rng)
    x = cv2.resize(x, (w, h), interpolation=int(rng.choice(_UP_INTERP)))
    x = np.clip(x, 0, 1)
    if is_u8:
        return np.rint(x * 255).astype(np.uint8)
    return x.astype(img.dtype if np.issubdtype(img.dtype, np.floating) else np.float32)


def degrade_batch(imgs: np.ndarray, rng: np.random.Generator | int | None = None, **kw) -> np.ndarray:
    """:func:`degrade` applied to each image of ``(N, H, W, 3)``, one child seed per image."""
    rng = np.random.default_rng(rng)
    seeds = rng.integers(0, 2**63 - 1, size=len(imgs))
    return np.stack([degrade(im, np.random.default_rng(int(s)), **kw) for im, s in zip(imgs, seeds)])
