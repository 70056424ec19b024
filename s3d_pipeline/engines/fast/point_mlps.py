"""The per-point MLPs (Δx and the NeRF decoder) as the fast engine computes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch


@dataclass
class PointMLPs:
    """The per-point MLPs' weights rearranged for the fast path, in its compute dtype, as (in, out) matrices for
    ``addmm``. The first layers are split by input, so no per-point concatenation is built: the displacement MLP's
    into its context and position halves (the position half into the rows of x and of its sines and cosines, so
    the positional encoding is never concatenated either), and the decoder's last layer into the density row and
    the feature rows (each output contiguous; an elementwise op over a strided slice is several times slower). The
    decoder's density shift is folded into its bias; the features' affine stretch (``TriPlaneRenderer.decode``) is
    applied after integration (it commutes with the weighted sum). Algebraically the same networks; only rounding
    differs.
    """

    disp_context: Optional[torch.Tensor]  # (Cd or A, H), with disp_bias (H,); None in mode "none"
    disp_position: Optional[Tuple[torch.Tensor, ...]]  # rows of x (3, H), and of sin and cos (3L, H) each when L > 0
    disp_bias: Optional[torch.Tensor]
    disp_hidden: Optional[Tuple[torch.Tensor, torch.Tensor]]  # (H, H), (H,)
    disp_out: Optional[Tuple[torch.Tensor, torch.Tensor]]  # (H, 3), (3,)
    dec_in: Tuple[torch.Tensor, torch.Tensor]  # (C, H), (H,)
    dec_density: Tuple[torch.Tensor, torch.Tensor]  # (H, 1), (1,)
    dec_features: Tuple[torch.Tensor, torch.Tensor]  # (H, F), (F,)

    @classmethod
    def from_modules(cls, deformation_field, renderer, dtype: torch.dtype) -> "PointMLPs":
        first, last = renderer.decoder_layers
        as_mm = lambda w, b: (w.t().to(dtype).contiguous(), b.to(dtype))  # noqa: E731
        dec_in = as_mm(first.weight, first.bias)
        dec_density = as_mm(last.weight[:1], last.bias[:1] + renderer.DENSITY_SHIFT)
        dec_features = as_mm(last.weight[1:], last.bias[1:])
        if deformation_field.config.mode == "none":
            return cls(None, None, None, None, None, dec_in, dec_density, dec_features)
        layer1, layer2, layer3 = deformation_field.displacement_layers
        num_frequencies = deformation_field.config.position_frequencies
        w1 = layer1.weight  # (H, context + position): the MLP reads cat([context, positional_encoding(x)])
        split = w1.shape[1] - 3 * (1 + 2 * num_frequencies)
        context, bias = as_mm(w1[:, :split], layer1.bias)
        # positional_encoding's layout: [x (3) | per axis: sin of its L angles, cos of its L angles].
        position = w1[:, split:].t()  # (3 (1 + 2L), H)
        rows = [position[:3]]
        if num_frequencies:
            per_axis = position[3:].reshape(3, 2, num_frequencies, -1)  # (3, sin | cos, L, H)
            rows += [per_axis[:, 0].flatten(0, 1), per_axis[:, 1].flatten(0, 1)]  # (3L, H) each, axis-major
        position = tuple(r.to(dtype).contiguous() for r in rows)
        return cls(context, position, bias, as_mm(layer2.weight, layer2.bias), as_mm(layer3.weight, layer3.bias), dec_in, dec_density, dec_features)

