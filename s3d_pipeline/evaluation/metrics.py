"""Frame and landmark metrics as the talking-head literature computes them.

All frame metrics take uint8 RGB frames (N, H, W, 3). Landmarks are 68-point iBUG (N, 68, 2) in pixels.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
from scipy import ndimage

MOUTH = slice(48, 68)
INNER_LIP_TOP, INNER_LIP_BOTTOM = 62, 66
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)


def psnr(frames: np.ndarray, reference: np.ndarray) -> float:
    """Mean per-frame PSNR in dB (pixel range 255); identical frames count as 100 dB."""
    err = ((frames.astype(np.float64) - reference.astype(np.float64)) ** 2).reshape(len(frames), -1).mean(axis=1)
    return float(np.mean(np.where(err > 0, 10 * np.log10(255.0**2 / np.maximum(err, 1e-12)), 100.0)))


def ssim(frames: np.ndarray, reference: np.ndarray) -> float:
    """Mean per-frame SSIM (Gaussian window, sigma 1.5, on RGB), as scikit-image computes it."""
    from skimage.metrics import structural_similarity

    return float(np.mean([
        structural_similarity(f, r, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
        for f, r in zip(frames, reference)
    ]))  # fmt: skip


def landmark_distance(predicted: np.ndarray, reference: np.ndarray, mouth_only: bool = False) -> float:
    """LMD: mean Euclidean distance (pixels) between landmarks over points and frames.

    F-LMD uses all 68 points; M-LMD the mouth points 48..67, each set centred on its own mean first so that
    it measures mouth shape, not head placement.
    """
    if mouth_only:
        predicted, reference = predicted[:, MOUTH], reference[:, MOUTH]
        predicted = predicted - predicted.mean(axis=1, keepdims=True)
        reference = reference - reference.mean(axis=1, keepdims=True)
    return float(np.linalg.norm(predicted - reference, axis=-1).mean())


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap (points 62-66) over the inter-ocular distance, per frame: (N, 68, 2) -> (N,)."""
    gap = np.linalg.norm(landmarks[:, INNER_LIP_TOP] - landmarks[:, INNER_LIP_BOTTOM], axis=-1)
    eyes = np.linalg.norm(landmarks[:, LEFT_EYE].mean(1) - landmarks[:, RIGHT_EYE].mean(1), axis=-1)
    return gap / np.maximum(eyes, 1e-6)


def correlation(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Pearson r, or None when either series is constant (r is undefined)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def cpbd(frame: np.ndarray, block: int = 64, beta: float = 3.6, p_jnb: float = 0.63) -> float:
    """Cumulative probability of blur detection (Narvekar & Karam, 2011), a no-reference sharpness score.

    Edges come from a Canny detector; the width of each mostly-vertical edge is measured along its row between
    the intensity extrema on either side (Marziliano et al.). In 64x64 blocks with enough edge pixels, the
    just-noticeable-blur width is 5 px for contrast <= 50 and 3 px above; an edge of width w is detected as
    blurred with probability ``1 - exp(-(w / w_jnb) ** beta)``. CPBD is the share of edges whose probability
    stays at or below 63 %. Higher is sharper; 0 when the frame has no edges.
    """
    from skimage.feature import canny

    gray = frame.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) if frame.ndim == 3 else frame.astype(np.float64)
    edges = canny(gray / 255.0, sigma=1.0)
    gx, gy = ndimage.sobel(gray, axis=1), ndimage.sobel(gray, axis=0)
    vertical = edges & (np.abs(gx) >= np.abs(gy))
    height, width = gray.shape
    probabilities = []
    for y0 in range(0, height - block + 1, block):
        for x0 in range(0, width - block + 1, block):
            tile = gray[y0 : y0 + block, x0 : x0 + block]
            tile_edges = vertical[y0 : y0 + block, x0 : x0 + block]
            if tile_edges.sum() <= 0.002 * block * block:
                continue
            w_jnb = 5.0 if tile.max() - tile.min() <= 50 else 3.0
            for r, c in zip(*np.nonzero(tile_edges)):
                w = _edge_width(gray[y0 + r], x0 + c, gx[y0 + r, x0 + c] > 0)
                probabilities.append(1.0 - np.exp(-((w / w_jnb) ** beta)))
    if not probabilities:
        return 0.0
    return float(np.mean(np.asarray(probabilities) <= p_jnb))


def _edge_width(row: np.ndarray, x: int, rising: bool) -> float:
    """Distance between the intensity extrema on both sides of an edge at ``x`` along one image row."""
    sign = 1.0 if rising else -1.0
    left = x
    while left > 0 and sign * (row[left - 1] - row[left]) < 0:
        left -= 1
    right = x
    while right < row.size - 1 and sign * (row[right + 1] - row[right]) > 0:
        right += 1
    return float(max(right - left, 1))


def mean_cpbd(frames: np.ndarray) -> float:
    return float(np.mean([cpbd(f) for f in frames]))


def lpips_metric() -> Tuple[Optional[Callable[[np.ndarray, np.ndarray], float]], str]:
    """LPIPS (AlexNet) when the ``lpips`` package and its backbone weights are already on this machine.

    Returns the metric (frames, reference) -> mean distance, or None, and a note saying which. Nothing is
    downloaded: offline, LPIPS is reported as unavailable rather than estimated.
    """
    import os

    import torch

    try:
        import lpips  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError:
        return None, "unavailable: the lpips package (and torchvision) are not installed"
    hub = os.path.join(torch.hub.get_dir(), "checkpoints")
    if not (os.path.isdir(hub) and any(name.startswith("alexnet") for name in os.listdir(hub))):
        return None, "unavailable: AlexNet backbone weights are not in the torch hub cache and cannot be downloaded here"
    model = lpips.LPIPS(net="alex", verbose=False).eval()

    @torch.no_grad()
    def measure(frames: np.ndarray, reference: np.ndarray) -> float:
        to_tensor = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
        return float(model(to_tensor(frames), to_tensor(reference)).mean())

    return measure, "lpips (AlexNet, torch hub cache)"
