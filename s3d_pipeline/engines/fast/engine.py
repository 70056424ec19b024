"""The fast engine itself: the per-identity cache and the per-frame path over it (see :mod:`s3d_pipeline.engines.fast`)."""

from __future__ import annotations

import dataclasses
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ...hardware import fast_compute_dtype
from ...models.layers import encoding_angles
from ...rendering.cameras import frontal_cam2world
from ...rendering.rays import pixel_rays
from ...rendering.volume import composite
from ..base import FrameBatch, StageTimer, untimed
from ..identity import Identity
from ..warping import warp_inputs
from .allocator import retain_freed_memory
from .folded_conv import SplitConv, fold_upsampling
from .occupancy import OccupancyGrid, empty_ray_depth, interval_depths, occupancy_grid, sample_radius
from .plane_table import PlaneTable, presum_triplanes
from .point_mlps import PointMLPs


@dataclass
class FastCache:
    """The fast engine's per-identity cache.

    Attributes:
        triplane: the pre-summed multi-scale tri-plane as a table.
        occupancy: the voxels that can add visible opacity, grown by the largest Δx and one voxel: they bound
            the samples of each ray, and a ray that meets none is not evaluated.
        unet_identity: (3, c0, R, R) the deformation U-Net's first convolution over the identity's planes.
        sr_source: the super-resolution's first convolution of each stage over the source features.
        sr_folded: the last stage's per-frame weights folded with the x2 upsampling before it (taken when the
            cache is built).
        mlps: the per-point MLPs' weights as the fast engine computes with them (taken when the cache is built).
        source_depth: (1, 1, r, r) the source view's depth, undeformed, for the warp's visibility (None when the
            super-resolution does not warp).
    """

    triplane: PlaneTable
    occupancy: OccupancyGrid
    unet_identity: Optional[torch.Tensor]
    sr_source: Tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    sr_folded: torch.Tensor
    mlps: PointMLPs
    source_depth: Optional[torch.Tensor] = None


class FastEngine:
    """The per-frame path (a_dri -> Δx -> volume rendering -> super-resolution) of a pipeline's components,
    rearranged for speed. It holds references to the components, not copies: same weights, no retraining.
    Deterministic: ray samples sit at fixed positions inside each ray's occupied interval.

    Args:
        audio_encoder, deformation_field, renderer, super_resolution: the pipeline's components.
        num_samples: samples per ray, all inside the ray's occupied interval (the reference uses ``num_coarse`` +
            ``num_importance``). 12 by default: 10 ran at 28.5 FPS (12: 22.6) with frames 41.0 dB from the
            reference's, but cost the held-out mouth metrics (mouth-opening correlation 0.617 -> 0.486, M-LMD
            1.62 -> 1.80 px; ``docs/performance.md``).
        dtype: compute type of the per-point MLPs and the tri-plane texels (``torch.bfloat16`` or ``torch.float32``);
            by default bf16 where the hardware computes it and float32 elsewhere (:mod:`s3d_pipeline.hardware`).
        occupancy_resolution: voxels per side of the identity's occupancy grid.
        rays_per_block: rays rendered together (their samples' intermediates should fit in the CPU's cache).
        frames_per_block: frames super-resolved together (likewise).

    Settings are read when an identity is prepared (:meth:`prepare`); change them before that.
    """

    def __init__(
        self,
        audio_encoder,
        deformation_field,
        renderer,
        super_resolution,
        num_samples: int = 12,
        dtype: Optional[torch.dtype] = None,
        occupancy_resolution: int = 32,
        rays_per_block: int = 2048,
        frames_per_block: int = 2,
    ) -> None:
        retain_freed_memory()  # per-frame buffers are reused instead of page-faulted afresh (see .allocator)
        self.audio_encoder = audio_encoder
        self.deformation_field = deformation_field
        self.renderer = renderer
        self.super_resolution = super_resolution
        self.num_samples = num_samples
        self.dtype = dtype or fast_compute_dtype(next(renderer.parameters()).device)
        self.occupancy_resolution = occupancy_resolution
        self.rays_per_block = rays_per_block
        self.frames_per_block = frames_per_block
        self.workers: Optional[int] = None  # render's worker threads; None: torch.get_num_threads()
        self._pool: Optional[ThreadPoolExecutor] = None  # made on first use
        self._pool_workers = 0
        self._caches: "weakref.WeakKeyDictionary[Identity, FastCache]" = weakref.WeakKeyDictionary()
        self.sr_convs = tuple(SplitConv(block.conv, per_frame_channels) for block, per_frame_channels in super_resolution.conditioned_blocks)

    # ------------------------------------------------------------------ per identity
    def prepare(self, identity: Identity) -> FastCache:
        """The identity's cache (see :class:`FastCache`), built on the first call and kept while the identity lives."""
        cache = self._caches.get(identity)
        if cache is None:
            cache = self._caches[identity] = self._build_cache(identity)
        return cache

    @torch.no_grad()
    def _build_cache(self, identity: Identity) -> FastCache:
        """Everything the fast engine can compute once per identity (batch-1 encodings)."""
        if identity.source.shape[0] != 1:
            raise ValueError(f"the fast engine renders one identity at a time, got a batch of {identity.source.shape[0]}")
        cfg = self.renderer.config
        table = presum_triplanes(identity.triplanes, cfg.triplane_extent)
        df = self.deformation_field
        margin = df.config.max_displacement if df.config.mode != "none" else 0.0
        occupancy = occupancy_grid(
            lambda p: self.renderer.decode(table.lookup(p))[0], sample_radius(cfg), self.occupancy_resolution, cfg.ray_far - cfg.ray_near
        )
        # Half a voxel because density between voxel centres can pass the threshold next to an occupied voxel, half a
        # voxel for the half-voxel steps of the ray march (see ``OccupancyGrid.ray_intervals``).
        occupancy = occupancy.dilated(margin + occupancy.voxel)
        table = dataclasses.replace(table, rows=table.rows.to(self.dtype))  # texels in the compute dtype
        unet_identity = None
        if df.uses_planes:
            res = df.config.unet_resolution
            planes = df.identity_planes(identity.triplanes)[0]  # (3, C, R, R)
            plane_id = df.plane_embedding[:, :, None, None].expand(-1, -1, res, res)  # (3, 8, R, R)
            first = df.unet.enc0.conv
            c, per_frame, _ = df.unet_input_channels
            unet_identity = F.conv2d(planes, first.weight[:, :c], first.bias, padding=1) + F.conv2d(
                plane_id, first.weight[:, c + per_frame :], None, padding=1
            )  # (3, c0, R, R)
        src0, src1, src2 = identity.source_features
        sr_source = tuple(conv.cache(src) for conv, src in zip(self.sr_convs, (src2, src1, src0)))
        up2 = self.sr_convs[2]
        cache = FastCache(
            triplane=table,
            occupancy=occupancy,
            unet_identity=unet_identity,
            sr_source=sr_source,
            sr_folded=fold_upsampling(up2.conv.weight[:, : up2.split]),
            mlps=PointMLPs.from_modules(df, self.renderer, self.dtype),
        )
        if self.super_resolution.warps:  # the source view itself: the frontal camera, no Δx
            cache.source_depth = self.volume_render(cache, None, None, frontal_cam2world()[None].to(identity.source), 0.0)[1]
        return cache

    # ------------------------------------------------------------------ per frame
    def deformation_planes(self, identity: Identity, cache: FastCache, a_dri):
        """(deformation planes (N, 3, Cd, R, R) or None, attention map (N, g, g) or None)."""
        df = self.deformation_field
        if not df.uses_planes:
            return None, None
        n, res = a_dri.pooled.shape[0], df.config.unet_resolution
        condition, attention_map, _ = df.frame_condition(identity.slots, a_dri.tokens)  # (N, D, R, R)
        audio_map = a_dri.pooled[:, :, None, None].expand(-1, -1, res, res)
        per_frame = torch.cat([condition, audio_map], dim=1).contiguous(memory_format=torch.channels_last)  # (N, D+A, R, R)
        first = df.unet.enc0.conv
        c = df.unet_input_channels[0]
        frame_part = F.conv2d(per_frame, first.weight[:, c : c + per_frame.shape[1]], None, padding=1)  # (N, c0, R, R)
        convolved = (frame_part[:, None] + cache.unet_identity[None]).flatten(0, 1)  # (N*3, c0, R, R)
        planes = df.unet.from_first_conv(convolved.contiguous(memory_format=torch.channels_last), inplace=True)
        return planes.reshape(n, 3, -1, res, res), attention_map

    def occupancy(self, cache: FastCache, mouth_amplitude: float) -> OccupancyGrid:
        """The identity's occupancy grid, grown further when a mouth amplitude above 1 moves points farther than the
        largest Δx it was grown by."""
        df = self.deformation_field
        extra = (mouth_amplitude - 1) * df.config.max_displacement if df.config.mode != "none" else 0.0
        return cache.occupancy.dilated(extra)  # the grid itself when extra <= 0

    def deformation_table(self, deform_planes: Optional[torch.Tensor]) -> Optional[PlaneTable]:
        """A chunk's deformation planes (N, 3, Cd, R, R) as one gather table in the compute dtype (None passes)."""
        if deform_planes is None:
            return None
        return PlaneTable.from_planes(deform_planes.to(self.dtype), self.deformation_field.config.triplane_extent)

    def displace(self, cache: FastCache, points, frames, deform_table, audio_pooled, mouth_amplitude: float) -> torch.Tensor:
        """Points (M, 3) of several frames (``frames`` (M,): the frame of each point) moved by their frame's
        mouth_amplitude * Δx; ``deform_table`` is :meth:`deformation_table` of the chunk (None for the naive
        variant, which reads ``audio_pooled`` (N, A))."""
        df, mlps, dtype = self.deformation_field, cache.mlps, self.dtype
        if df.config.mode == "none" or mouth_amplitude == 0:
            return points
        if deform_table is not None:
            context = deform_table.lookup(points[None], frames[None])[0]  # (M, Cd)
            hidden = torch.addmm(mlps.disp_bias, context, mlps.disp_context)  # (M, H)
        else:  # the naive variant reads a_dri per point: its share of the first layer is one row per frame
            hidden = torch.addmm(mlps.disp_bias, audio_pooled.to(dtype), mlps.disp_context)[frames]  # (M, H)
        # The positional encoding's share of the first layer, term by term (no per-point concatenation).
        scaled = points / df.config.triplane_extent  # (M, 3)
        hidden.addmm_(scaled.to(dtype), mlps.disp_position[0])
        if len(mlps.disp_position) > 1:
            angles = encoding_angles(scaled, df.config.position_frequencies).flatten(1)  # (M, 3L), axis-major
            hidden.addmm_(angles.sin().to(dtype), mlps.disp_position[1]).addmm_(angles.cos_().to(dtype), mlps.disp_position[2])
        hidden = F.silu(hidden, inplace=True)
        hidden = F.silu(torch.addmm(mlps.disp_hidden[1], hidden, mlps.disp_hidden[0]), inplace=True)
        raw = torch.addmm(mlps.disp_out[1], hidden, mlps.disp_out[0])  # (M, 3)
        return points + (mouth_amplitude * df.config.max_displacement) * torch.tanh(raw.float())

    def shade(self, cache: FastCache, points: torch.Tensor, depths: torch.Tensor):
        """Decode and integrate the samples of K rays: points (K, S, 3) (displaced), depths (K, S, 1) ->
        features (K, F), depth (K, 1), opacity (K, 1), and the weight-summed points (K, 3) (the rays' canonical
        surface, :mod:`s3d_pipeline.rendering.warp`)."""
        num_rays, num_samples, _ = points.shape
        mlps = cache.mlps
        # Texel coordinates stay fp32 (bf16 ones are too coarse); the texels are in the compute dtype.
        features = cache.triplane.lookup(points.reshape(1, num_rays * num_samples, 3))[0]  # (K*S, C)
        hidden = F.softplus(torch.addmm(mlps.dec_in[1], features, mlps.dec_in[0]))  # (K*S, H)
        density = F.softplus(torch.addmm(mlps.dec_density[1], hidden, mlps.dec_density[0]))  # (K*S, 1)
        sigmoid = torch.addmm(mlps.dec_features[1], hidden, mlps.dec_features[0]).sigmoid_()  # (K*S, F)
        density = density.float().reshape(1, num_rays, num_samples, 1)
        # Integrate the densities alone, then the features in one weighted sum: an interval's feature is the mean of
        # its two ends, so sample j carries half the weights of the intervals on either side of it.
        result = composite(density, density[..., :0], depths[None])
        weights = result.weights[0, ..., 0]  # (K, S), the last one zero
        per_sample = 0.5 * (weights + F.pad(weights[:, :-1], (1, 0)))  # (K, S), summing to the opacity
        summed = torch.bmm(per_sample[:, None].to(sigmoid.dtype), sigmoid.reshape(num_rays, num_samples, sigmoid.shape[-1]))[:, 0].float()  # (K, F)
        margin = self.renderer.FEATURE_MARGIN  # the decoder's stretch s * (1 + 2 m) - m, integrated
        features = summed * (1 + 2 * margin) - margin * result.opacity[0]
        canonical = torch.bmm(per_sample[:, None], points)[:, 0]  # (K, 3), fp32
        return features, result.depth[0], result.opacity[0], canonical

    def render_rays(self, cache: FastCache, rays, origins, dirs, enter, leave, deform_table, audio_pooled, mouth_amplitude: float):
        """Samples, Δx, decoding and integration of the rays numbered ``rays`` (K,) among the chunk's ``origins``,
        ``dirs`` (B*N, 3) and occupied intervals ``enter``, ``leave`` (B*N,): (features (K, F), depth (K, 1),
        opacity (K, 1), canonical (K, 3))."""
        num_rays, num_samples = rays.shape[0], self.num_samples
        res = self.renderer.config.ray_resolution
        depths = interval_depths(enter[rays], leave[rays], num_samples)  # (K, S, 1)
        points = origins[rays, None] + dirs[rays, None] * depths  # (K, S, 3)
        frames = (rays // (res * res)).repeat_interleave(num_samples)  # (K*S,) the frame of each point
        points = self.displace(cache, points.reshape(num_rays * num_samples, 3), frames, deform_table, audio_pooled, mouth_amplitude)
        return self.shade(cache, points.reshape(num_rays, num_samples, 3), depths)

    def rays_crossing(self, cache: FastCache, cam2world: torch.Tensor, mouth_amplitude: float = 1.0):
        """The rays of cameras (B, 4, 4), flattened frame-major: origins, dirs (B*N, 3), and the depths enter, leave
        (B*N,) over which each crosses occupied voxels; crossed (B*N,) is False for a ray that crosses none."""
        cfg = self.renderer.config
        origins, dirs = (t.reshape(-1, 3) for t in pixel_rays(cam2world, cfg.ray_resolution, cfg.focal))  # (B*N, 3) each
        enter, leave, crossed = self.occupancy(cache, mouth_amplitude).ray_intervals(origins, dirs, cfg.ray_near, cfg.ray_far)
        return origins, dirs, enter, leave, crossed

    def volume_render(self, cache: FastCache, deform_planes, audio_pooled, cam2world: torch.Tensor, mouth_amplitude: float):
        """Volume rendering: (features (N, F, r, r), depth (N, 1, r, r), opacity (N, 1, r, r), canonical (N, 3, r, r)).

        Only the rays that cross an occupied voxel are evaluated, with their samples inside the occupied interval;
        the others see nothing, as in the reference renderer: zero features and opacity, and the reference's depth.
        The evaluated rays go through in blocks of ``rays_per_block``, so that each block's per-point intermediates
        stay in the CPU's cache.
        """
        cfg = self.renderer.config
        batch, res = cam2world.shape[0], cfg.ray_resolution
        origins, dirs, enter, leave, crossed = self.rays_crossing(cache, cam2world, mouth_amplitude)
        rays = crossed.nonzero()[:, 0]  # (K,) the rays evaluated, frame-major
        deform_table = self.deformation_table(deform_planes)
        blocks = [
            self.render_rays(cache, block, origins, dirs, enter, leave, deform_table, audio_pooled, mouth_amplitude)
            for block in rays.split(self.rays_per_block)
        ]
        features, depth, opacity, canonical = (torch.cat(parts) for parts in zip(*blocks))  # (K, F), (K, 1), (K, 1), (K, 3)

        def to_image(values: torch.Tensor, empty: float) -> torch.Tensor:
            """Per evaluated ray (K, C) -> (B, C, r, r), the skipped rays filled with ``empty``."""
            every_ray = values.new_full((batch * res * res, values.shape[1]), empty).index_copy_(0, rays, values)  # (B*N, C)
            return every_ray.reshape(batch, res * res, -1).transpose(1, 2).reshape(batch, -1, res, res)

        return to_image(features, 0.0), to_image(depth, empty_ray_depth(cfg)), to_image(opacity, 0.0), to_image(canonical, 0.0)

    def super_resolve(self, cache: FastCache, features, opacity, source, warped=None, visibility=None) -> torch.Tensor:
        """Coarse render (N, F, r, r), (N, 1, r, r) (and the warp's (N, 3, S, S), (N, 1, S, S)) -> the frame
        (N, 3, S, S) in [-1, 1], ``frames_per_block`` frames at a time: a frame's activations at the x4 resolution
        (~12 MB) stay in the CPU's cache where a chunk's would not (GroupNorm is per frame, so the blocks give the
        same frames)."""
        step = self.frames_per_block
        part = lambda t, i: None if t is None else t[i : i + step]  # noqa: E731
        return torch.cat(
            [
                self.super_resolve_block(cache, features[i : i + step], opacity[i : i + step], source, part(warped, i), part(visibility, i))
                for i in range(0, features.shape[0], step)
            ]
        )

    def super_resolve_block(self, cache: FastCache, features, opacity, source, warped=None, visibility=None) -> torch.Tensor:
        """:meth:`super_resolve` of a few frames, with the source halves of the convolutions cached."""
        sr = self.super_resolution
        (coarse_block, _), (up1_block, _), (up2_block, _) = sr.conditioned_blocks
        coarse_conv, up1_conv, up2_conv = self.sr_convs
        cached_coarse, cached_up1, cached_up2 = cache.sr_source
        up = lambda t: F.interpolate(t, scale_factor=2.0, mode="bilinear", align_corners=False)  # noqa: E731
        x = torch.cat([features, opacity], dim=1).contiguous(memory_format=torch.channels_last)
        x = coarse_block.finish(coarse_conv(x, cached_coarse), inplace=True)
        x = sr.coarse_refine(x)
        x = up1_block.finish(up1_conv(up(x), cached_up1), inplace=True)
        x = up2_block.finish(up2_conv.upsampled(x, cached_up2, cache.sr_folded), inplace=True)  # the x4 stage's upsampling folded in
        return sr.finish(x, features, opacity, source, warped, visibility).image

    def render(
        self, identity: Identity, audio_windows: torch.Tensor, cam2world: torch.Tensor, mouth_amplitude: float = 1.0, *, timer: StageTimer = untimed
    ) -> FrameBatch:
        """See :class:`~s3d_pipeline.engines.base.RenderEngine`: windows (n, F, W), cam2world (n, 4, 4) -> frames.

        With ``torch.get_num_threads()`` > 1 the chunk is split into that many parts by frame, rendered at once by as
        many worker threads, each running its ops on one thread: this CPU path's small ops scale poorly across
        intra-op threads (measured: a chunk on 2 intra-op threads took 1.8x as long as its two halves on two 1-thread
        workers). The frames are the same either way (each frame's computation does not depend on the others). A
        timed render runs on the calling thread, so that its stages do not overlap."""
        cache = self.prepare(identity)
        workers = min(self.workers or torch.get_num_threads(), audio_windows.shape[0])
        if workers <= 1 or timer is not untimed:
            return self.render_part(identity, cache, audio_windows, cam2world, mouth_amplitude, timer)
        if self._pool is None or self._pool_workers != workers:
            if self._pool is not None:
                self._pool.shutdown()
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="s3d-fast", initializer=torch.set_num_threads, initargs=(1,))
            self._pool_workers = workers
        parts = zip(audio_windows.tensor_split(workers), cam2world.tensor_split(workers))
        done = list(self._pool.map(lambda part: self.render_part(identity, cache, *part, mouth_amplitude), parts))
        attention = None if done[0].attention is None else torch.cat([d.attention for d in done])
        return FrameBatch(image=torch.cat([d.image for d in done]), depth=torch.cat([d.depth for d in done]), attention=attention)

    @torch.no_grad()  # in the calling thread: grad mode is per thread
    def render_part(self, identity: Identity, cache: FastCache, audio_windows, cam2world, mouth_amplitude: float, timer: StageTimer = untimed) -> FrameBatch:
        """:meth:`render` of some frames, on the calling thread."""
        with timer("audio"):
            a_dri = self.audio_encoder(audio_windows)
        with timer("deformation"):
            deform_planes, attention = self.deformation_planes(identity, cache, a_dri)
        with timer("rendering"):
            features, depth, opacity, canonical = self.volume_render(cache, deform_planes, a_dri.pooled, cam2world, mouth_amplitude)
        with timer("super_resolution"):
            warped = visibility = None
            if self.super_resolution.warps:
                warped, visibility = warp_inputs(identity, canonical, opacity, cache.source_depth, self.renderer.config.ray_resolution)
            image = self.super_resolve(cache, features, opacity, identity.source, warped, visibility)
        return FrameBatch(image=image, depth=depth[:, 0], attention=attention)
