"""`s3d-nerf train` end to end at tiny sizes: lip-sync pretraining, generator training, resume, export, DDP."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from s3d_pipeline import S3DNeRFPipeline
from s3d_pipeline.cli import main
from s3d_pipeline.data.clip import list_clips, read_clip
from s3d_pipeline.models import LipSyncDiscriminator
from s3d_pipeline.training.config import SyncNetConfig, get_config
from s3d_pipeline.training.metrics_log import read_log
from s3d_pipeline.training.trainer import SyncNetTraining

from tiny_talking_corpus import make_corpus


def write_config(path, **changes):
    config = replace(get_config("tiny"), **changes)
    config.to_json(path)
    return str(path)


@pytest.fixture(scope="module")
def run_with_syncnet(tmp_path_factory):
    """A run folder holding a (randomly initialised, tiny) lip-sync discriminator, as the syncnet stage leaves it."""
    out = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    LipSyncDiscriminator(**get_config("tiny").components()["lip_sync"]).save_pretrained(out / "syncnet" / "lip_sync")
    return out


def test_generator_training_lowers_loss_exports_and_resumes(tiny_corpus, run_with_syncnet, tmp_path):
    out = run_with_syncnet
    # With the source's mouth hidden from the super-resolution, the tiny model needs far more than 20 steps to
    # render the hidden box (measured: PSNR 19.4 -> 18.5 in 40 steps, against 20.8 -> 24.2 with the whole source).
    shown = {"super_resolution": {"hidden_source_box": None}}
    config = write_config(tmp_path / "tiny.json", eval_every=20, sample_every=20, checkpoint_every=10, batch_size=2, architecture_overrides=shown)
    assert main(["train", "--config", config, "--data", str(tiny_corpus), "--out", str(out), "--max-steps", "20"]) == 0

    # The loss went down: PSNR of full frames rendered by the pipeline path, before vs after training.
    evaluation = read_log(out / "generator" / "eval.csv")
    assert [row["step"] for row in evaluation] == [0, 20]
    assert evaluation[1]["psnr"] > evaluation[0]["psnr"] + 0.5
    log = read_log(out / "generator" / "log.csv")
    assert [row["step"] for row in log] == list(range(1, 21))
    assert {"pixel", "perceptual", "adversarial", "sync", "deformation", "discriminator"} <= set(log[0])
    assert (out / "generator" / "samples" / "step_00000020.png").is_file()

    # The exported folder loads and runs, with the trained weights.
    pipe = S3DNeRFPipeline.from_pretrained(out / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    checkpoint = out / "generator" / "checkpoints" / "step_00000020"
    trained = load_file(checkpoint / "model_renderer.safetensors")
    assert all(torch.equal(pipe.renderer.state_dict()[k], v) for k, v in trained.items())
    clip = read_clip(list_clips(tiny_corpus)[0])
    result = pipe(clip.rgb[0], (clip.audio[:8000], 16000), aligned=True, yaw=5.0)
    assert result.frames.shape == (12, 64, 64, 3) and result.sync_confidence is not None

    # --resume from the step-10 checkpoint continues at step 11 and lands exactly where the uninterrupted run did.
    resumed_out = tmp_path / "resumed"
    shutil.copytree(out / "syncnet", resumed_out / "syncnet")
    shutil.copytree(out / "generator" / "checkpoints" / "step_00000010", resumed_out / "generator" / "checkpoints" / "step_00000010")
    assert main(["train", "--config", config, "--data", str(tiny_corpus), "--out", str(resumed_out), "--max-steps", "20", "--resume"]) == 0
    assert [row["step"] for row in read_log(resumed_out / "generator" / "log.csv")] == list(range(11, 21))
    uninterrupted = json.loads((out / "generator" / "final_state.json").read_text())
    resumed = json.loads((resumed_out / "generator" / "final_state.json").read_text())
    assert resumed["step"] == uninterrupted["step"] == 20
    assert resumed["processes"][0]["digest"] == uninterrupted["processes"][0]["digest"]


def test_syncnet_prefers_aligned_audio_on_held_out_identity(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", identities=3, clips_per_identity=2, num_frames=48, seed=1)
    config = replace(get_config("tiny"), holdout_identities=1, checkpoint_every=0, log_every=0, syncnet=SyncNetConfig(steps=300, batch_size=32, candidates=9, lr=3e-3, mismatched_fraction=0.0))
    run = SyncNetTraining(config, corpus, tmp_path / "run")
    run.train()
    metrics = run.finish()
    assert metrics["evaluated_on"] == "held-out identities"
    assert metrics["cosine_aligned"] > metrics["cosine_shift_-5"] + 0.05
    assert metrics["cosine_aligned"] > metrics["cosine_shift_+5"] + 0.05
    assert metrics["aligned_beats_both_shifts"] > 0.5 and metrics["mean_abs_offset"] <= 1.0
    loaded = LipSyncDiscriminator.from_pretrained(tmp_path / "run" / "syncnet" / "lip_sync")
    assert torch.equal(loaded.state_dict()["visual.0.0.weight"], run.lip_sync.state_dict()["visual.0.0.weight"])


def test_two_process_training_keeps_replicas_identical(tiny_corpus, run_with_syncnet, tmp_path):
    out = tmp_path / "ddp"
    (out / "syncnet").mkdir(parents=True)
    os.symlink(run_with_syncnet / "syncnet" / "lip_sync", out / "syncnet" / "lip_sync")
    config = write_config(tmp_path / "ddp.json", eval_every=0, sample_every=0, checkpoint_every=0)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000),
        "-m", "s3d_pipeline.cli", "train", "--config", config, "--data", str(tiny_corpus), "--out", str(out), "--max-steps", "3",
    ]  # fmt: skip
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True)
    final = json.loads((out / "generator" / "final_state.json").read_text())
    assert [p["step"] for p in final["processes"]] == [3, 3]
    assert final["processes"][0]["digest"] == final["processes"][1]["digest"]
    # The processes drew different samples, so equal weights mean the gradients really were averaged.
    checkpoint = out / "generator" / "checkpoints" / "step_00000003"
    samplers = [json.loads((checkpoint / f"sampler_rank{r}.json").read_text()) for r in (0, 1)]
    assert samplers[0] != samplers[1]
    assert np.isfinite([row["loss"] for row in read_log(out / "generator" / "log.csv")]).all()


def test_init_from_continues_from_a_pipeline_folder(tiny_corpus, tmp_path):
    """--init-from loads a pipeline folder's generator weights and lip-sync discriminator; a folder of another
    architecture is refused with a clear error."""
    from s3d_pipeline.configs import build_pipeline

    earlier = build_pipeline("tiny", seed=7)  # other weights than the config's seed-0 start
    earlier.save_pretrained(tmp_path / "earlier")
    config = write_config(tmp_path / "tiny.json", eval_every=0, sample_every=0, checkpoint_every=0)
    out = tmp_path / "continued"
    assert main(["train", "--config", config, "--data", str(tiny_corpus), "--out", str(out), "--max-steps", "0", "--init-from", str(tmp_path / "earlier")]) == 0
    exported = S3DNeRFPipeline.from_pretrained(out / "pipeline")
    for name in ("appearance_encoder", "renderer", "super_resolution", "lip_sync"):
        expected = getattr(earlier, name).state_dict()
        assert all(torch.equal(v, expected[k]) for k, v in getattr(exported, name).state_dict().items()), name

    # A later --export-pipeline (no --init-from, no --syncnet) exports the discriminator the run trained against,
    # from the run's own copy (the folder it came from has moved).
    shutil.rmtree(out / "pipeline")
    (tmp_path / "earlier").rename(tmp_path / "moved")
    assert main(["train", "--config", config, "--data", str(tiny_corpus), "--out", str(out), "--export-pipeline"]) == 0
    reexported = S3DNeRFPipeline.from_pretrained(out / "pipeline").lip_sync.state_dict()
    assert all(torch.equal(v, earlier.lip_sync.state_dict()[k]) for k, v in reexported.items())

    # --reinit keeps the config's seeded random weights for the named components, and loads the rest.
    out = tmp_path / "reinit"
    assert main(["train", "--config", config, "--data", str(tiny_corpus), "--out", str(out), "--max-steps", "0", "--init-from", str(tmp_path / "moved"), "--reinit", "audio_encoder"]) == 0
    exported = S3DNeRFPipeline.from_pretrained(out / "pipeline")
    fresh = build_pipeline("tiny", seed=0).audio_encoder.state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in exported.audio_encoder.state_dict().items())
    assert all(torch.equal(v, earlier.renderer.state_dict()[k]) for k, v in exported.renderer.state_dict().items())
    code = main(["train", "--config", config, "--data", str(tiny_corpus), "--out", str(tmp_path / "typo"), "--max-steps", "0", "--init-from", str(tmp_path / "earlier"), "--reinit", "audio"])
    assert code == 2

    build_pipeline("tiny", renderer={"hidden_dim": 8}).save_pretrained(tmp_path / "other")
    code = main(["train", "--config", config, "--data", str(tiny_corpus), "--out", str(tmp_path / "refused"), "--max-steps", "0", "--init-from", str(tmp_path / "other")])
    assert code == 2


def test_clips_with_head_masks_supervise_the_coarse_render(tmp_path):
    """With head masks the coarse render's RGB and opacity are trained towards the head (L_raw, L_sil)."""
    from s3d_pipeline.training.trainer import GeneratorTraining

    corpus = make_corpus(tmp_path / "masked", identities=2, clips_per_identity=2, masks=True)
    config = replace(get_config("tiny-no_lip_sync"), eval_every=0, sample_every=0, checkpoint_every=0)
    run = GeneratorTraining(config, corpus, tmp_path / "run", max_steps=30)
    run.train()
    log = read_log(tmp_path / "run" / "generator" / "log.csv")
    for term in ("silhouette", "raw_render"):
        values = [row[term] for row in log]
        assert np.mean(values[-5:]) < 0.6 * np.mean(values[:5]), term


def test_a_step_with_non_finite_gradients_leaves_the_weights_untouched(tiny_corpus, tmp_path, monkeypatch):
    from s3d_pipeline.training import trainer as trainer_module
    from s3d_pipeline.training.trainer import GeneratorTraining

    config = replace(get_config("tiny-no_lip_sync"), eval_every=0, sample_every=0, checkpoint_every=0)
    run = GeneratorTraining(config, tiny_corpus, tmp_path / "run", max_steps=1)
    before = {k: v.clone() for k, v in run.components["renderer"].state_dict().items()}
    monkeypatch.setattr(trainer_module, "pixel_loss", lambda fake, real: (fake - real).square().mean() * float("nan"))
    run.train_step()
    assert run.skipped_updates == 1
    assert all(torch.equal(v, before[k]) for k, v in run.components["renderer"].state_dict().items())
    monkeypatch.undo()
    run.train_step()
    assert run.skipped_updates == 1
    assert any(not torch.equal(v, before[k]) for k, v in run.components["renderer"].state_dict().items())


def test_learning_rate_warms_up_from_the_first_step_of_a_run(tiny_corpus, tmp_path):
    """With lr_warmup_steps the step-k update uses (k+1)/warmup of the learning rate: Adam's first update moves
    every weight by about the learning rate, so the first warmed-up update is a quarter of a cold one."""
    from s3d_pipeline.training.trainer import GeneratorTraining

    def first_updates(warmup, steps):
        config = replace(get_config("tiny-no_lip_sync"), eval_every=0, sample_every=0, checkpoint_every=0, lr_warmup_steps=warmup)
        run = GeneratorTraining(config, tiny_corpus, tmp_path / f"warmup{warmup}", max_steps=steps)
        rates, moves = [], []
        for step in range(steps):
            before = torch.cat([p.detach().flatten().clone() for p in run.generator_parameters])
            run.step = step
            run.train_step()
            rates.append(run.optimizer.param_groups[0]["lr"])
            moves.append((torch.cat([p.detach().flatten() for p in run.generator_parameters]) - before).abs().max().item())
        return config.lr, rates, moves

    lr, rates, moves = first_updates(4, 6)
    assert rates == pytest.approx([lr * f for f in (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)])
    _, cold_rates, cold_moves = first_updates(0, 1)
    assert cold_rates == [lr]
    assert moves[0] == pytest.approx(0.25 * cold_moves[0], rel=0.05)
    with pytest.raises(ValueError, match="lr_warmup_steps"):
        replace(get_config("tiny"), lr_warmup_steps=-1)


def test_mixed_precision_override_and_the_slow_bf16_warning(tiny_corpus, run_with_syncnet, tmp_path, monkeypatch, capsys):
    """--mixed-precision overrides the recipe (and is what the run records); bf16 on a CPU without native bf16
    warns that it is slow and says what to pass instead."""
    from accelerate.state import AcceleratorState

    import s3d_pipeline.training.trainer as trainer

    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: False)
    AcceleratorState._reset_state(reset_partial_state=True)  # accelerate keeps one precision per process
    config = write_config(tmp_path / "bf16.json", mixed_precision="bf16")
    common = ["train", "--config", config, "--data", str(tiny_corpus), "--syncnet", str(run_with_syncnet / "syncnet" / "lip_sync"), "--max-steps", "0"]
    assert main(common + ["--out", str(tmp_path / "a")]) == 0
    assert "--mixed-precision no" in capsys.readouterr().out
    assert json.loads((tmp_path / "a" / "train_config.json").read_text())["mixed_precision"] == "bf16"
    AcceleratorState._reset_state(reset_partial_state=True)
    assert main(common + ["--out", str(tmp_path / "b"), "--mixed-precision", "no"]) == 0
    assert "no native bf16" not in capsys.readouterr().out
    assert json.loads((tmp_path / "b" / "train_config.json").read_text())["mixed_precision"] == "no"
