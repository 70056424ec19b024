"""The fast engine: the same component weights as the reference engine, rearranged for a CPU.

The reference engine (:mod:`s3d_pipeline.engines.reference`, what training uses) evaluates every network exactly
as written. This engine produces the same frames up to a measured error (``s3d-nerf bench`` reports the PSNR
between the two) and moves all per-identity work out of the per-frame loop:

* **Pre-summed tri-plane.** The four tri-plane scales are resampled once per identity onto the finest grid
  (grown by a border where the coarser scales' zero padding fades out) and summed: a point
  needs one bilinear lookup instead of four. Exact for the finest scale; the coarser scales' bilinear kinks
  are smoothed within one fine texel.
* **One gather for all planes.** A lookup is one ``embedding_bag`` over a channels-last table of texels:
  12 weighted rows per point (3 planes x 4 corners, the plane mean folded into the weights), rather than
  ``grid_sample`` over channel-first planes. The deformation planes use the same lookup.
* **Occupancy-grid samples, empty rays skipped.** At identity time the model's own (undeformed) density is
  evaluated on a coarse grid; the voxels that could add visible opacity, dilated by the largest Δx the
  deformation field can produce, are kept as a boolean grid. Per frame every ray is marched through the grid
  (a boolean lookup every half voxel, all rays at once) to find the depths over which it crosses occupied
  voxels; all ``num_samples`` samples of the ray go inside that interval, in one pass (no coarse network pass
  for importance sampling). Rays that cross no occupied voxel are dropped before the lookups and MLPs (the
  evaluated rays are packed into one batch) and get what the reference gives a ray that sees nothing.
* **Split first convolutions.** Where a convolution reads per-identity channels beside per-frame ones
  (the deformation U-Net's input, the super-resolution's source features) it is split by linearity:
  the per-identity part is convolved once and cached. The U-Net's per-frame condition is convolved once per
  frame instead of once per plane.
* **bf16 per-point MLPs, rearranged** (:class:`.point_mlps.PointMLPs`): the displacement and decoder MLPs run in bf16 (where
  the hardware computes bf16; float32 elsewhere, see :mod:`s3d_pipeline.hardware`) on
  weights converted once per identity, their first layers split by input so that no per-point concatenation is
  built, the decoder's outputs computed as contiguous density and feature blocks, activations in place. The
  tri-plane texels are bf16 too; texel coordinates and the transmittance products stay fp32 (the features'
  weighted sum along each ray is bf16). Gather indices are int32. Convolutions run fp32 in channels-last layout
  (bf16 convolutions measured slower on this CPU, no AMX).
* **Cache-sized blocks.** The evaluated rays go through sampling, Δx, decoding and integration in blocks of
  ``rays_per_block`` and the super-resolution runs ``frames_per_block`` frames at a time, so that per-point and
  per-pixel intermediates stay in the CPU's cache instead of streaming a chunk's hundreds of MB through memory.
* **Upsampling folded into the next convolution.** The super-resolution's last stage convolves a x2 bilinear
  upsampling; both are linear, so the pair is one convolution of the low-resolution input into the four output
  phases (:func:`.folded_conv.upsampled_conv`), exact up to rounding, and the upsampled image is never built.
* **Freed memory kept for reuse** (:mod:`.allocator`): the per-block buffers come back from malloc's heap instead
  of fresh, zero-filled pages from the OS.

Modules, one concept each: :mod:`.plane_table` (the gather table and the pre-summed tri-plane),
:mod:`.occupancy` (the grid and the ray intervals), :mod:`.folded_conv` (split and upsampling-folded
convolutions), :mod:`.point_mlps` (the rearranged MLP weights), :mod:`.allocator` (malloc tuning) and
:mod:`.engine` (the cache and the per-frame path).
"""

from .engine import FastCache, FastEngine

__all__ = ["FastCache", "FastEngine"]
