import torch

from s3d_pipeline.rendering.rays import pixel_rays
from s3d_pipeline.rendering.cameras import FOCAL, frontal_cam2world, project
from s3d_pipeline.rendering.samplers import importance_depths, stratified_depths
from s3d_pipeline.rendering.triplane import plane_coordinates, sample_multiscale, sample_planes
from s3d_pipeline.rendering.volume import composite, sort_samples


def test_constant_feature_and_dense_medium_composite_to_that_feature():
    depths = torch.linspace(2.0, 3.0, 32).reshape(1, 1, 32, 1)
    density = torch.full_like(depths, 200.0)
    features = torch.ones(1, 1, 32, 4)
    out = composite(density, features, depths)
    assert torch.allclose(out.opacity, torch.ones(1, 1, 1), atol=1e-4)
    assert torch.allclose(out.features, torch.ones(1, 1, 4), atol=1e-4)


def test_opaque_first_interval_hides_everything_behind_it():
    depths = torch.linspace(2.0, 3.0, 16).reshape(1, 1, 16, 1)
    density = torch.zeros_like(depths)
    density[:, :, :2] = 1e4
    features = torch.zeros(1, 1, 16, 3)
    features[:, :, :2] = torch.tensor([1.0, 0.0, 0.0])
    features[:, :, 2:] = torch.tensor([0.0, 1.0, 0.0])
    out = composite(density, features, depths)
    assert torch.allclose(out.features, torch.tensor([[[1.0, 0.0, 0.0]]]), atol=1e-4)
    assert abs(float(out.depth) - float(0.5 * (depths[0, 0, 0] + depths[0, 0, 1]))) < 1e-4


def test_empty_space_is_transparent():
    depths = torch.linspace(2.0, 3.0, 8).reshape(1, 1, 8, 1)
    out = composite(torch.zeros_like(depths), torch.ones(1, 1, 8, 2), depths)
    assert float(out.opacity) == 0.0 and float(out.features.abs().sum()) == 0.0


def test_importance_samples_concentrate_where_the_weight_is():
    depths = stratified_depths(1, 1, 32, 2.0, 3.0)
    weights = torch.zeros_like(depths)
    weights[:, :, 20] = 1.0
    fine = importance_depths(depths, weights, 16)
    lo, hi = depths[0, 0, 19, 0], depths[0, 0, 21, 0]
    assert torch.all((fine >= lo) & (fine <= hi))


def test_stratified_jitter_stays_in_bins_and_is_reproducible():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = stratified_depths(1, 5, 10, 2.0, 3.0, generator=g1)
    b = stratified_depths(1, 5, 10, 2.0, 3.0, generator=g2)
    assert torch.equal(a, b)
    bins = torch.floor((a - 2.0) / 0.1).squeeze(-1)
    assert torch.equal(bins[0, 0], torch.arange(10, dtype=bins.dtype))


def test_sort_samples_reorders_values_with_depths():
    depths = torch.tensor([3.0, 1.0, 2.0]).reshape(1, 1, 3, 1)
    values = torch.tensor([30.0, 10.0, 20.0]).reshape(1, 1, 3, 1)
    d, v = sort_samples(depths, values)
    assert torch.equal(d.flatten(), torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(v.flatten(), torch.tensor([10.0, 20.0, 30.0]))


def test_xy_plane_is_laid_out_like_the_frontal_image():
    # A point at the upper-left of the face must read the upper-left plane texel.
    planes = torch.zeros(1, 3, 1, 4, 4)
    planes[0, 0, 0, 0, 0] = 1.0  # xy plane, row 0 (top), column 0 (left)
    extent = 0.4
    point = torch.tensor([[[-0.3, 0.3, 0.0]]])  # viewer's left, up: the centre of texel (0, 0)
    feat = sample_planes(planes, plane_coordinates(point, extent))
    assert abs(float(feat) - 1 / 3) < 1e-5  # only the xy plane holds the value; the mean is over three planes
    uv = project(point[0], frontal_cam2world())[0, :2]
    assert uv[0] < 0.5 and uv[1] < 0.5  # the camera also sees it up and to the left


def test_multiscale_sum_over_scales():
    fine = torch.ones(1, 3, 2, 8, 8)
    coarse = torch.full((1, 3, 2, 2, 2), 2.0)
    feats = sample_multiscale([fine, coarse], torch.zeros(1, 5, 3), extent=0.5)
    assert torch.allclose(feats, torch.full((1, 5, 2), 3.0))


def test_pixel_rays_pass_through_their_pixels():
    cam = frontal_cam2world()[None]
    origins, dirs = pixel_rays(cam, 8, FOCAL)
    points = origins + dirs * 2.5  # (1, 64, 3)
    uv = project(points[0], cam[0])[:, :2]
    centres = (torch.arange(8) + 0.5) / 8
    expected = torch.stack(torch.meshgrid(centres, centres, indexing="ij")[::-1], dim=-1).reshape(-1, 2)
    assert torch.allclose(uv, expected, atol=1e-5)
