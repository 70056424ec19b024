"""Small numeric helpers for the procedural head: smooth steps, Gaussian bumps and structured grid meshes.

Every surface of the synthetic head (skull, hair shell, neck, mouth cavity, teeth) is a regular grid of
vertices, rows and columns, so topology is fixed per identity and normals come from finite differences along
the grid instead of a per-triangle scatter.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite ramp from 0 at ``edge0`` to 1 at ``edge1`` (edges may be in either order)."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def bump(x: np.ndarray, y: np.ndarray, x0: float, y0: float, sx: float, sy: float) -> np.ndarray:
    """Unit-height anisotropic Gaussian centred on (x0, y0)."""
    return np.exp(-0.5 * (((x - x0) / sx) ** 2 + ((y - y0) / sy) ** 2))


def grid_triangles(rows: int, cols: int, wrap: bool, keep: Optional[np.ndarray] = None) -> np.ndarray:
    """Two triangles per grid cell: -> (T, 3) int32 vertex indices into the row-major (rows * cols) grid.

    Args:
        wrap: close the grid around its columns (last column joins the first).
        keep: optional (rows - 1, cells_per_row) bool mask of cells to triangulate.
    """
    n_cells = cols if wrap else cols - 1
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(n_cells), indexing="ij")  # (rows-1, n_cells)
    if keep is not None:
        r, c = r[keep], c[keep]
    c1 = (c + 1) % cols
    v00, v01 = r * cols + c, r * cols + c1
    v10, v11 = (r + 1) * cols + c, (r + 1) * cols + c1
    tris = np.stack([np.stack([v00, v01, v11], -1), np.stack([v00, v11, v10], -1)], axis=-2)  # (..., 2, 3)
    return tris.reshape(-1, 3).astype(np.int32)


def grid_normals(points: np.ndarray, wrap: bool) -> np.ndarray:
    """Unit normals of a grid surface (rows, cols, 3) -> (rows, cols, 3).

    Rows are assumed to run "up" and columns "right" as seen from outside, so cross(d_col, d_row) points
    outwards. One-sided differences at the row ends keep a torn edge (the mouth slit) sharp.
    """
    if wrap:
        d_col = np.roll(points, -1, axis=1) - np.roll(points, 1, axis=1)
    else:
        d_col = np.gradient(points, axis=1)
    d_row = np.gradient(points, axis=0)
    n = np.cross(d_col, d_row)
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
