"""Pieces of the training system at tiny sizes: configs, sampling, the windowed render, losses, checkpoints."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import s3d_pipeline.training
from s3d_pipeline.configs import build_components
from s3d_pipeline.models.deformation_field import IdentitySlots
from s3d_pipeline.rendering.cameras import pose_to_cam2world
from s3d_pipeline.training import checkpointing
from s3d_pipeline.training.config import TrainConfig, config_names, get_config
from s3d_pipeline.training.data import Corpus, Sampler, SyncPairBank
from s3d_pipeline.training.discriminator import ImageDiscriminator
from s3d_pipeline.training.losses import r1_penalty, raw_render_losses, sync_audio_windows, sync_logits
from s3d_pipeline.training.perceptual import build_perceptual_loss
from s3d_pipeline.training.trainer import choose_window, render_window

from tiny_talking_corpus import make_corpus

RECIPES = Path(s3d_pipeline.training.__file__).parent / "recipes"  # the shipped weights' recipes


# ----------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "name, mode, sync",
    [("demo", "cross_attention", 0.5), ("demo-no_deformation", "none", 0.5), ("demo-naive", "naive", 0.5),
     ("demo-concat", "concat", 0.5), ("demo-no_lip_sync", "cross_attention", 0.0)],
)  # fmt: skip
def test_ablations_are_configs(name, mode, sync):
    config = get_config(name)
    assert config.components()["deformation_field"]["mode"] == mode
    assert config.losses.sync == sync
    assert config.losses.perceptual == 0.01 and config.losses.deformation == 0.001


def test_ablation_applies_on_top_of_a_recipe():
    recipe = str(RECIPES / "demo_cpu_speech.json")
    speech = get_config(recipe)
    naive, no_sync = get_config(recipe, "naive"), get_config(recipe, "no_lip_sync")
    assert naive.components()["deformation_field"]["mode"] == "naive"
    assert naive.components()["audio_encoder"] == speech.components()["audio_encoder"]  # other overrides kept
    assert (naive.lr, naive.losses, naive.mouth_patch_probability) == (speech.lr, speech.losses, speech.mouth_patch_probability)
    assert no_sync.losses.sync == 0.0 and no_sync.losses.pixel == speech.losses.pixel
    assert get_config(recipe, "full") == speech
    with pytest.raises(ValueError, match="unknown ablation"):
        get_config(recipe, "no_audio")


def test_config_json_round_trip_and_errors(tmp_path):
    config = get_config("paper-naive")
    config.to_json(tmp_path / "c.json")
    assert get_config(str(tmp_path / "c.json")) == config
    assert get_config("paper").components()["renderer"]["ray_resolution"] == 128
    assert "tiny-concat" in config_names()
    (tmp_path / "bad.json").write_text(json.dumps({"learning_rate": 1.0}))
    with pytest.raises(ValueError, match="learning_rate"):
        get_config(str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match="fp16"):
        TrainConfig(mixed_precision="fp16")
    with pytest.raises(ValueError, match="unknown training config"):
        get_config("demo-no_such_ablation")


def test_cpu_recipes_are_valid_and_share_the_generator_optimiser():
    """The shipped weights' recipes load (unknown fields would raise); warm-up and full stages differ only in the
    loss weights, so the full stage continues the warm-up's optimisation as configured."""
    from dataclasses import replace

    syncnet, warmup, full = (get_config(str(RECIPES / f"demo_cpu_{name}.json")) for name in ("syncnet", "warmup", "full"))
    assert syncnet.architecture == warmup.architecture == full.architecture == "demo"
    assert warmup.losses.sync == 0 and warmup.losses.adversarial == 0
    assert full.losses == get_config("demo").losses  # the paper's objective
    assert replace(full, losses=warmup.losses) == warmup
    speech = get_config(str(RECIPES / "demo_cpu_speech.json"))
    assert (speech.lr, speech.mouth_patch_probability, speech.losses.sync) == (2e-4, 0.75, 0.03)
    assert replace(speech, lr=warmup.lr, mouth_patch_probability=warmup.mouth_patch_probability, losses=warmup.losses) == warmup
    # The continuation that produced the shipped step 12,000: the speech stage at half the rate, warmed up, more L_sync.
    cont = get_config(str(RECIPES / "demo_cpu_speech_continue.json"))
    assert (cont.lr, cont.lr_warmup_steps, cont.losses.sync) == (1e-4, 300, 0.1)
    assert replace(cont, lr=speech.lr, lr_warmup_steps=speech.lr_warmup_steps, losses=speech.losses,
                   checkpoint_every=speech.checkpoint_every, keep_checkpoints=speech.keep_checkpoints) == speech


def test_the_warp_recipe_is_the_continuation_with_a_warp_head_and_its_ablation_removes_it():
    from dataclasses import replace

    cont = get_config(str(RECIPES / "demo_cpu_speech_continue.json"))
    warp = get_config(str(RECIPES / "demo_cpu_warp.json"))
    assert warp.components()["super_resolution"]["warp_channels"] == 16
    assert replace(warp, architecture_overrides={}, lr_warmup_steps=cont.lr_warmup_steps, checkpoint_every=cont.checkpoint_every) == cont
    without = get_config(str(RECIPES / "demo_cpu_warp.json"), "no_warp")
    assert without.components()["super_resolution"]["warp_channels"] == 0
    assert replace(without, architecture_overrides={}) == replace(warp, architecture_overrides={})


def test_warm_start_adds_a_warp_head_to_weights_trained_without_one(tmp_path):
    """A pipeline folder without the warp head warm-starts a config with one: every saved weight is loaded, the
    head keeps its initial (frame-preserving) values; a folder whose weights do not fit is still refused."""
    from s3d_pipeline.configs import build_components, build_pipeline
    from s3d_pipeline.training.trainer import warm_start

    build_pipeline("tiny", seed=3).save_pretrained(tmp_path / "plain")
    config = get_config("tiny")
    config = replace_overrides(config, {"super_resolution": {"warp_channels": 8}})
    components = build_components(config.components(), seed=0)
    head = {k: v.clone() for k, v in components["super_resolution"].state_dict().items() if k.startswith("warp_head.")}
    warm_start(components, config, tmp_path / "plain")
    saved = build_pipeline("tiny", seed=3).super_resolution.state_dict()
    loaded = components["super_resolution"].state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())
    assert head and all(torch.equal(loaded[k], v) for k, v in head.items())
    wider = replace_overrides(config, {"super_resolution": {"warp_channels": 8, "channels": [16, 8, 4]}})
    with pytest.raises(ValueError, match="do not fit"):
        warm_start(build_components(wider.components()), wider, tmp_path / "plain")


def test_training_finds_the_shipped_lip_sync_discriminator_when_its_architecture_matches():
    """README's train line works on a fresh clone: the demo config falls back to the shipped discriminator; a config
    of another architecture gets none (and the run then says how to pretrain one)."""
    from s3d_pipeline.paths import DEFAULT_CHECKPOINT
    from s3d_pipeline.training.trainer import shipped_lip_sync

    assert shipped_lip_sync(get_config("demo")) == DEFAULT_CHECKPOINT / "lip_sync"
    assert shipped_lip_sync(get_config("tiny")) is None


def replace_overrides(config, overrides: dict):
    from dataclasses import replace

    return replace(config, architecture_overrides=overrides)


def test_a_recipe_extends_another_and_changes_only_what_it_names(tmp_path):
    base = {"architecture": "tiny", "patch_rays": 8, "lr": 1e-3, "losses": {"sync": 0.0, "pixel": 2.0}, "architecture_overrides": {"renderer": {"hidden_dim": 8, "num_layers": 2}}}
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "sub").mkdir()
    child = {"extends": "../base.json", "losses": {"sync": 0.25}, "architecture_overrides": {"renderer": {"hidden_dim": 16}}}
    (tmp_path / "sub" / "child.json").write_text(json.dumps(child))
    config = get_config(str(tmp_path / "sub" / "child.json"))
    assert config.lr == 1e-3 and (config.losses.sync, config.losses.pixel) == (0.25, 2.0)
    assert config.architecture_overrides == {"renderer": {"hidden_dim": 16, "num_layers": 2}}
    (tmp_path / "loop.json").write_text(json.dumps({"extends": "loop.json"}))
    with pytest.raises(ValueError, match="extends itself"):
        get_config(str(tmp_path / "loop.json"))
    (tmp_path / "orphan.json").write_text(json.dumps({"extends": "missing.json"}))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        get_config(str(tmp_path / "orphan.json"))


# ----------------------------------------------------------------------------------------------- data
def test_sampler_pairs_same_identity_and_restores_state(tiny_corpus):
    corpus = Corpus.from_folder(tiny_corpus, holdout_identities=1)
    assert {c.identity for c in corpus.holdout} == {"id01"} and {c.identity for c in corpus.train} == {"id00"}
    sampler = Sampler(Corpus.from_folder(tiny_corpus).train, resolution=64, window=5, seed=3)
    batch = sampler.generator_batch(2)
    assert batch.source.shape == (2, 3, 64, 64) and batch.targets.shape == (2, 5, 3, 64, 64)
    assert batch.cameras.shape == (2, 5, 4, 4) and batch.source.min() >= -1 and batch.targets.max() <= 1
    # Cameras are expressed in the source's tri-plane frame: rotations, with the camera on the 2.7 sphere.
    assert torch.allclose(batch.cameras[..., :3, 3].norm(dim=-1), torch.full((2, 5), 2.7), atol=1e-4)
    state = sampler.state_dict()
    first = sampler.generator_batch(1)
    sampler.load_state_dict(json.loads(json.dumps(state)))
    again = sampler.generator_batch(1)
    assert again.starts == first.starts and torch.equal(again.targets, first.targets)


def test_mouth_window_contains_the_mouth():
    rng = np.random.default_rng(0)
    top, left, size = choose_window(rng, 64, 32, mouth_probability=1.0)
    assert size == 32 and top <= 0.68 * 64 < top + size and left <= 32 < left + size
    assert choose_window(rng, 16, 16, 0.5) == (0, 0, 16)


# ----------------------------------------------------------------------------------------------- rendering
@pytest.fixture(scope="module")
def tiny_components():
    components = build_components(get_config("tiny").components(), seed=0)
    for module in components.values():
        module.eval()
    return components


def test_ray_window_is_a_crop_of_the_full_render(tiny_components):
    torch.manual_seed(0)
    triplanes = tiny_components["appearance_encoder"](torch.rand(1, 3, 64, 64) * 2 - 1).triplanes
    cams = pose_to_cam2world(torch.tensor([10.0]), torch.tensor([-5.0]))
    with torch.no_grad():
        full = tiny_components["renderer"](triplanes, cams)
        window = tiny_components["renderer"](triplanes, cams, ray_window=(4, 6, 8))
    assert window.features.shape == (1, 8, 8, 8)
    assert torch.allclose(window.features, full.features[..., 4:12, 6:14], atol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        tiny_components["renderer"](triplanes, cams, ray_window=(10, 0, 8))


def test_each_source_drives_only_its_own_target_frames(tiny_components):
    """A batch of B sources with T target frames each renders as B one-source batches do: the identity is shared
    out source-major, each source's frames composited onto its own (hidden-mouth) crop."""
    torch.manual_seed(1)
    source = torch.rand(2, 3, 64, 64) * 2 - 1
    windows = torch.randn(2, 3, 80, 16)  # (B, T, F, W)
    cams = pose_to_cam2world(torch.tensor([[0.0, 10.0, -10.0], [5.0, -5.0, 0.0]])).reshape(2, 3, 4, 4)
    with torch.no_grad():
        both = render_window(tiny_components, source, windows, cams, (4, 4, 8)).image  # (6, 3, 32, 32)
        alone = [render_window(tiny_components, source[i : i + 1], windows[i : i + 1], cams[i : i + 1], (4, 4, 8)).image for i in range(2)]
    assert both.shape == (6, 3, 32, 32)
    assert torch.allclose(both, torch.cat(alone), atol=1e-5)
    assert not torch.allclose(alone[0], alone[1], atol=1e-2)


def test_window_render_trains_every_generator_component(tiny_components):
    source = torch.rand(2, 3, 64, 64) * 2 - 1
    cams = pose_to_cam2world(torch.zeros(2, 5)).reshape(2, 5, 4, 4)
    out = render_window(tiny_components, source, torch.randn(2, 5, 80, 16), cams, (8, 4, 8))
    assert out.image.shape == (10, 3, 32, 32) and out.displacement.shape[0] == 10
    out.image.square().mean().backward()
    for name in ("appearance_encoder", "renderer", "super_resolution"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_components[name].parameters()), name
    # Δx starts at zero (zero-initialised last layer): the first gradient reaches that layer, which then opens
    # the path to the audio encoder.
    assert tiny_components["deformation_field"].displacement_layers[-1].weight.grad.abs().sum() > 0
    for module in tiny_components.values():
        module.zero_grad(set_to_none=True)
    assert isinstance(tiny_components["deformation_field"].encode_identity(torch.randn(1, 16, 24)), IdentitySlots)


# ----------------------------------------------------------------------------------------------- losses
def test_raw_render_losses_vanish_for_the_premultiplied_head_and_need_masks(tmp_path, tiny_corpus):
    torch.manual_seed(0)
    target = torch.rand(2, 3, 32, 32) * 2 - 1
    mask = (torch.rand(2, 1, 32, 32) > 0.5).float()
    head = torch.nn.functional.avg_pool2d((target + 1) / 2 * mask, 4)  # what a perfect render shows
    coverage = torch.nn.functional.avg_pool2d(mask, 4)
    raw, silhouette = raw_render_losses(head, coverage, target, mask)
    assert float(raw) < 1e-12 and float(silhouette) < 1e-12
    raw, silhouette = raw_render_losses(head + 0.1, torch.zeros_like(coverage), target, mask)
    assert abs(float(raw) - 0.01) < 1e-6 and abs(float(silhouette) - float(coverage.square().mean())) < 1e-6
    # The sampler hands masks over only when the clips have them.
    masked = make_corpus(tmp_path / "masked", identities=2, clips_per_identity=1, masks=True)
    batch = Sampler(Corpus.from_folder(masked).train, 64, 5, seed=0).generator_batch(2)
    assert batch.masks.shape == (2, 5, 1, 64, 64) and 0 < float(batch.masks.mean()) < 1
    assert Sampler(Corpus.from_folder(tiny_corpus).train, 64, 5, seed=0).generator_batch(2).masks is None


def test_discriminator_r1_and_perceptual():
    disc = ImageDiscriminator(32, channel_base=256, max_channels=32)
    real = torch.rand(4, 3, 32, 32, requires_grad=True)
    logits = disc(real)
    assert logits.shape == (4,)
    assert r1_penalty(logits, real) > 0
    perceptual, backend = build_perceptual_loss("auto")  # offline here: the seeded random VGG-16
    assert backend == "random_vgg16"
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    assert perceptual(image, image) < 1e-8 < perceptual(image, image.flip(-1))
    again, _ = build_perceptual_loss("random_vgg16")
    assert all(torch.equal(a, b) for a, b in zip(perceptual.state_dict().values(), again.state_dict().values()))


def test_sync_candidates_come_from_the_bank_of_crops_and_mel(tiny_components, tiny_corpus):
    lip_sync = tiny_components["lip_sync"]
    clip = Corpus.from_folder(tiny_corpus).train[0]
    bank = SyncPairBank([clip], lip_sync, 64)  # one clip: every negative is a shift within it
    batch = bank.batch(np.random.default_rng(0), 8, candidates=4, min_shift=3, max_shift=15, mismatched_fraction=0.0)
    assert batch.crops.shape == (8, 5, 3, 16, 32) and batch.mel.shape == (8, 4, 80, 20)
    windows = bank.crops[0].float().div(255).unfold(0, 5, 1).permute(0, 4, 1, 2, 3)  # every (start, T, 3, h, w)
    audio = lip_sync.mel_windows(bank.mels[0], torch.arange(len(windows)), clip.fps)  # every start's mel window
    for crops, candidates in zip(batch.crops, batch.mel):
        start = int(torch.nonzero((windows == crops).flatten(1).all(1))[0])
        found = [int(torch.nonzero((audio == mel).flatten(1).all(1))[0]) for mel in candidates]
        assert found[0] == start  # the first candidate is the aligned audio
        shifts = [abs(f - start) for f in found[1:]]
        assert all(3 <= s <= 15 for s in shifts) and len(set(f - start for f in found[1:])) == 3  # distinct shifts


def test_sync_logits_shapes(tiny_components, tiny_corpus):
    lip_sync = tiny_components["lip_sync"]
    clip = Corpus.from_folder(tiny_corpus).train[0]
    frames = torch.rand(4, 5, 3, 64, 64)
    mel = sync_audio_windows(lip_sync, [torch.randn(16000)] * 4, [0, 3, 6, 9], [clip.fps] * 4)
    assert mel.shape == (4, 80, 20)
    assert sync_logits(lip_sync, frames, mel).shape == (4,)


# ----------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_without_pickles(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    folder = checkpointing.staging_dir(tmp_path, 7)
    folder.mkdir()
    checkpointing.save_model_states(folder, {"m": model}, {"m": optimizer})
    checkpointing.save_process_state(folder, 0, {"torch": torch.get_rng_state()}, {"bit_generator": {"a": 1}})
    checkpointing.finalise(folder, checkpointing.checkpoint_dir(tmp_path, 7), {"step": 7}, keep=2)
    latest = checkpointing.latest_checkpoint(tmp_path)
    assert latest.name == "step_00000007"
    assert {p.suffix for p in latest.iterdir()} == {".safetensors", ".json"}
    restored, restored_opt = torch.nn.Linear(3, 2), torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    restored_opt = torch.optim.Adam(restored.parameters(), lr=0.5)
    state = checkpointing.load_checkpoint(latest, {"m": restored}, {"m": restored_opt}, rank=0)
    assert state["step"] == 7 and state["sampler"] == {"bit_generator": {"a": 1}}
    assert torch.equal(restored.weight, model.weight)
    assert restored_opt.param_groups[0]["lr"] == 0.1
    assert torch.equal(restored_opt.state[restored.weight]["exp_avg"], optimizer.state[model.weight]["exp_avg"])
