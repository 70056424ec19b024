"""The two training stages of S³D-NeRF, run through ``accelerate`` (one process, or many across GPUs and nodes).

``syncnet``: pretrain the lip-sync discriminator on in-sync vs shifted and mismatched (video, audio) windows.
``generator``: train the appearance encoder, audio encoder, deformation field, renderer and super-resolution
with L = L_pix + 0.01 L_per + L_adv + 0.5 L_sync + 0.001 L_deform against the frozen lip-sync discriminator
and a StyleGAN2-style image discriminator, then export a diffusers-layout pipeline folder.

Affordable rendering (ours): each step renders a ``patch_rays`` x ``patch_rays`` window of the ray grid at the
inference ray spacing (a quarter of the rays for ``demo``) for T consecutive target frames, and the
super-resolution turns it into the matching 4x crop against the same crop of the source. The networks thus
train at exactly the scale the pipeline runs them at, through the same per-frame path: the reference engine
(:mod:`s3d_pipeline.engines.reference`). The lip-sync loss sees the rendered window pasted into the ground-truth
frames, and half of the windows are centred on the mouth.

Data parallelism: every process draws its own samples (seed + rank) and gradients are averaged across processes
after each backward pass, with ``accelerate``'s collective ``reduce``. (Gradients are averaged explicitly rather
than through DistributedDataParallel because a GAN step runs the discriminator several times and R1 needs a
double backward, which DDP does not support; StyleGAN2-ADA synchronises the same way.)

Run layout under ``--out``::

    train_config.json
    syncnet/    checkpoints/  log.csv  lip_sync/ (save_pretrained)  metrics.json
    generator/  checkpoints/  log.csv  samples/step_*.png  final_state.json
    pipeline/   model_index.json + one folder per component (S3DNeRFPipeline.from_pretrained loads it)
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import PIL.Image
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from ..configs import COMPONENTS, build_components
from ..engines import FrameBatch, ReferenceEngine, encode_identity
from ..evaluation import metrics
from ..frames import to_uint8
from ..hardware import cpu_has_native_bf16
from ..models import LipSyncDiscriminator
from ..paths import DEFAULT_CHECKPOINT
from ..pipeline_s3d_nerf import S3DNeRFPipeline
from ..rendering.framing import MOUTH_CENTER
from . import checkpointing
from .config import TrainConfig
from .data import ClipInfo, Corpus, Sampler, SyncPairBank, frames_to_tensor
from .discriminator import ImageDiscriminator
from .losses import (
    SYNC_LOGIT_SCALE,
    deformation_regulariser,
    discriminator_loss,
    generator_adversarial_loss,
    lip_sync_loss,
    pixel_loss,
    r1_penalty,
    raw_render_losses,
    sync_audio_windows,
    sync_logits,
    syncnet_loss,
)
from .metrics_log import MetricsLog
from .perceptual import build_perceptual_loss

logger = logging.getLogger(__name__)

GENERATOR_COMPONENTS = ("appearance_encoder", "audio_encoder", "deformation_field", "renderer", "super_resolution")
SR_SCALE = 4  # the super-resolution's x4: frame pixels per ray


# ============================================================================================= shared machinery
def warmup_factor(step: int, warmup_steps: int) -> float:
    """Share of the configured learning rate at optimisation step ``step`` (0-based) of a run: linear from
    1 / ``warmup_steps`` up to 1 at the end of the warm-up, 1 without one."""
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


class TrainingRun:
    """What both stages share: the accelerator, checkpoints, gradient averaging, logging and the progress bar.

    Subclasses set ``self.models`` / ``self.optimizers`` (the checkpointed state) and implement :meth:`train_step`.
    """

    stage: str

    def __init__(self, config: TrainConfig, data: Path, out: Path, max_steps: int) -> None:
        self.config = config
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=config.mixed_precision)
        self.rank = self.accelerator.process_index
        self.device = self.accelerator.device
        self.out = Path(out)
        self.folder = self.out / self.stage
        self.checkpoints = self.folder / "checkpoints"
        self.max_steps = max_steps
        self.step = 0
        self.skipped_updates = 0  # optimiser steps skipped for non-finite gradients
        self.corpus = Corpus.from_folder(data, config.holdout_identities, min_frames=config.target_frames)
        self.resolution = config.ray_resolution * SR_SCALE
        self.sampler = Sampler(self.corpus.train, self.resolution, config.target_frames, seed=config.seed + 1000 * self.rank)
        # Jitters ray samples within their bins; per process, like the data.
        self.render_generator = torch.Generator(device=self.device).manual_seed(config.seed + 1000 * self.rank)
        self.models: Dict[str, torch.nn.Module] = {}
        self.optimizers: Dict[str, torch.optim.Optimizer] = {}
        if self.accelerator.is_main_process:
            self.folder.mkdir(parents=True, exist_ok=True)
            config.to_json(self.out / "train_config.json")
            if config.mixed_precision == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
                print("warning: this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 autocast runs about 20x slower "
                      "than fp32 here; pass --mixed-precision no")
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ gradients
    def average_gradients(self, parameters: List[torch.nn.Parameter]) -> None:
        """Replace every gradient by its mean over processes (one collective over a flat buffer)."""
        if self.accelerator.num_processes == 1:
            return
        for p in parameters:  # every process must contribute a buffer of the same layout
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.flatten() for p in parameters])
        flat = self.accelerator.reduce(flat, reduction="mean")
        offset = 0
        for p in parameters:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    def step_optimizer(self, optimizer: torch.optim.Optimizer, parameters: List[torch.nn.Parameter]) -> bool:
        """Average the gradients over processes, then take the optimiser step unless one of them is not finite.

        A skipped step leaves the weights untouched (a single NaN would otherwise spread to every weight for the
        rest of the run). Every process sees the same averaged gradients, so all of them skip together and the
        replicas stay identical."""
        self.average_gradients(parameters)
        if all(torch.isfinite(p.grad).all() for p in parameters if p.grad is not None):
            factor = warmup_factor(self.step, self.config.lr_warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor
            optimizer.step()
            return True
        self.skipped_updates += 1
        logger.warning("%s step %d: non-finite gradients, update skipped (%d so far)", self.stage, self.step + 1, self.skipped_updates)
        return False

    def mean_over_processes(self, values: Dict[str, float]) -> Dict[str, float]:
        if self.accelerator.num_processes == 1:
            return values
        stacked = self.accelerator.reduce(torch.tensor(list(values.values()), device=self.device), reduction="mean")
        return dict(zip(values, stacked.tolist()))

    # ------------------------------------------------------------------ checkpoints
    def _rng_state(self) -> Dict[str, torch.Tensor]:
        return {"torch": torch.get_rng_state(), "render": self.render_generator.get_state()}

    def save_checkpoint(self) -> Path:
        """Every process writes its RNG and sampler state; the main process writes networks and optimisers."""
        staging = checkpointing.staging_dir(self.checkpoints, self.step)
        final = checkpointing.checkpoint_dir(self.checkpoints, self.step)
        if self.accelerator.is_main_process:
            staging.mkdir(parents=True, exist_ok=True)
        self.accelerator.wait_for_everyone()
        checkpointing.save_process_state(staging, self.rank, self._rng_state(), self.sampler.state_dict())
        if self.accelerator.is_main_process:
            checkpointing.save_model_states(staging, self.models, self.optimizers)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            state = {"stage": self.stage, "step": self.step, "num_processes": self.accelerator.num_processes, "config": self.config.architecture}
            checkpointing.finalise(staging, final, state, self.config.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        return final

    def resume(self) -> None:
        """Continue from the newest checkpoint of this stage (a fresh start when there is none)."""
        latest = checkpointing.latest_checkpoint(self.checkpoints)
        if latest is None:
            if self.accelerator.is_main_process:
                print(f"no checkpoint under {self.checkpoints}: starting from step 0")
            return
        state = checkpointing.load_checkpoint(latest, self.models, self.optimizers, self.rank)
        self.step = int(state["step"])
        if state["rng"] is not None:
            torch.set_rng_state(state["rng"]["torch"])
            self.render_generator.set_state(state["rng"]["render"])
        if state["sampler"] is not None:
            self.sampler.load_state_dict(state["sampler"])
        else:
            logger.warning("checkpoint %s has no sampler state for process %d: drawing fresh samples", latest, self.rank)
        if self.accelerator.is_main_process:
            print(f"resumed {self.stage} from {latest} at step {self.step}")

    # ------------------------------------------------------------------ loop
    def train_step(self) -> Dict[str, float]:
        raise NotImplementedError

    def on_step_end(self) -> None:
        """Periodic work after a step (evaluation, samples); also runs once before the first step."""

    def train(self) -> None:
        cfg = self.config
        log = MetricsLog(self.folder) if self.accelerator.is_main_process else None
        if log is not None:
            print(f"{self.stage}: {len(self.corpus.train)} training clips, {len(self.corpus.holdout)} held out; "
                  f"{self.accelerator.num_processes} process(es) on {self.device}; logging to {log.backends}")  # fmt: skip
        if self.step == 0:
            self.on_step_end()  # the untrained baseline of the periodic evaluation
        progress = tqdm(total=self.max_steps, initial=self.step, desc=self.stage, disable=not self.accelerator.is_main_process)
        while self.step < self.max_steps:
            started = time.perf_counter()
            values = self.train_step()
            self.step += 1
            values["seconds_per_step"] = time.perf_counter() - started
            values = self.mean_over_processes(values)
            progress.update(1)
            progress.set_postfix(loss=f"{values['loss']:.4f}")
            if log is not None and cfg.log_every and (self.step % cfg.log_every == 0 or self.step == self.max_steps):
                log.log(self.step, values)
            self.on_step_end()
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < self.max_steps:
                self.save_checkpoint()
        progress.close()
        self.save_checkpoint()
        if log is not None:
            log.close()

    def parameter_digest(self) -> str:
        """SHA-256 of every trained parameter, to check that all processes hold the same weights."""
        digest = hashlib.sha256()
        for name, model in sorted(self.models.items()):
            for key, value in sorted(model.state_dict().items()):
                digest.update(key.encode())
                digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def write_final_state(self, extra: Optional[dict] = None) -> dict:
        """Gather the step count and parameter digest of every process into ``final_state.json``."""
        per_process = gather_object([{"rank": self.rank, "step": self.step, "digest": self.parameter_digest()}])
        state = {"step": self.step, "skipped_updates": self.skipped_updates, "processes": sorted(per_process, key=lambda p: p["rank"]), **(extra or {})}
        if self.accelerator.is_main_process:
            (self.folder / "final_state.json").write_text(json.dumps(state, indent=2))
        return state


# ============================================================================================= lip-sync stage
@torch.no_grad()
def evaluate_syncnet(lip_sync: LipSyncDiscriminator, clips: List[ClipInfo], resolution: int, shift: int = 5) -> dict:
    """Mean in-sync cosine similarity of every window of ``clips`` with its aligned audio and with the audio
    shifted by ``-shift`` and ``+shift`` frames, over windows where both shifts stay inside the clip; plus the
    share of windows scored higher aligned than both shifted, and the mean SyncNet-style confidence and offset."""
    from ..data.clip import read_clip

    lip_sync.eval()
    aligned, earlier, later, wins, confidences, offsets = [], [], [], [], [], []
    t = lip_sync.config.num_frames
    for info in clips:
        clip = read_clip(info.path, load_depth=False)
        frames = frames_to_tensor(clip.rgb, resolution)  # (N, 3, R, R)
        waveform = torch.from_numpy(clip.audio)
        starts = torch.arange(shift, info.num_frames - t + 1 - shift)
        if len(starts) == 0:
            continue
        video = lip_sync.embed_video(lip_sync.frame_windows(lip_sync.crop_lower_face(frames))[starts])  # (W, D)
        mel = lip_sync.mel(waveform)
        cos = {k: (video * lip_sync.embed_audio(lip_sync.mel_windows(mel, starts + k, info.fps))).sum(-1) for k in (0, -shift, shift)}
        aligned.append(cos[0])
        earlier.append(cos[-shift])
        later.append(cos[shift])
        wins.append((cos[0] > cos[-shift]) & (cos[0] > cos[shift]))
        score = lip_sync.score(frames, waveform, info.fps)
        confidences.append(score.confidence)
        offsets.append(abs(score.offset))
    if not aligned:
        raise ValueError(f"no clip is long enough (>= {t + 2 * shift} frames) to evaluate the lip-sync discriminator")
    return {
        "clips": len(aligned),
        "windows": int(sum(len(a) for a in aligned)),
        "cosine_aligned": float(torch.cat(aligned).mean()),
        f"cosine_shift_-{shift}": float(torch.cat(earlier).mean()),
        f"cosine_shift_+{shift}": float(torch.cat(later).mean()),
        "aligned_beats_both_shifts": float(torch.cat(wins).float().mean()),
        "mean_confidence": float(np.mean(confidences)),
        "mean_abs_offset": float(np.mean(offsets)),
    }


class SyncNetTraining(TrainingRun):
    """Pretrains the lip-sync discriminator; ends with ``syncnet/lip_sync`` (save_pretrained) and ``metrics.json``."""

    stage = "syncnet"

    def __init__(self, config: TrainConfig, data: Path, out: Path, max_steps: Optional[int] = None) -> None:
        super().__init__(config, data, out, max_steps if max_steps is not None else config.syncnet.steps)
        torch.manual_seed(config.seed)
        self.lip_sync = LipSyncDiscriminator(**config.components()["lip_sync"]).to(self.device)
        self.optimizer = torch.optim.Adam(self.lip_sync.parameters(), lr=config.syncnet.lr)
        self.models = {"lip_sync": self.lip_sync}
        self.optimizers = {"lip_sync": self.optimizer}
        self.bank = SyncPairBank(self.corpus.train, self.lip_sync, self.resolution)

    def train_step(self) -> Dict[str, float]:
        sc = self.config.syncnet
        batch = self.bank.batch(self.sampler.rng, sc.batch_size, sc.candidates, sc.min_shift, sc.max_shift, sc.mismatched_fraction)
        self.lip_sync.train()
        with self.accelerator.autocast():
            logits = SYNC_LOGIT_SCALE * self.lip_sync(batch.crops.to(self.device), batch.mel.to(self.device)).float()  # (B, C)
        loss = syncnet_loss(logits)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.step_optimizer(self.optimizer, list(self.lip_sync.parameters()))
        accuracy = (logits.argmax(dim=1) == 0).float().mean()  # aligned audio ranked first
        return {"loss": loss.item(), "accuracy": accuracy.item()}

    def finish(self) -> dict:
        """Save the discriminator for the generator stage and the pipeline; evaluate it on held-out clips."""
        metrics: dict = {}
        if self.accelerator.is_main_process:
            self.lip_sync.save_pretrained(self.folder / "lip_sync", safe_serialization=True)
            clips = self.corpus.holdout or self.corpus.train
            metrics = evaluate_syncnet(self.lip_sync, clips, self.resolution)
            metrics["evaluated_on"] = "held-out identities" if self.corpus.holdout else "training clips (no identity held out)"
            (self.folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
            print(json.dumps(metrics))
        self.write_final_state()
        return metrics


# ============================================================================================= generator stage
def choose_window(rng: np.random.Generator, rays: int, size: int, mouth_probability: float) -> Tuple[int, int, int]:
    """(top, left, size) of the ray window of a step: centred on the mouth with ``mouth_probability``, else uniform."""
    if size >= rays:
        return 0, 0, rays
    if rng.random() < mouth_probability:
        top = int(round(MOUTH_CENTER[1] * rays - size / 2))
        left = int(round(MOUTH_CENTER[0] * rays - size / 2))
        return min(max(top, 0), rays - size), min(max(left, 0), rays - size), size
    return int(rng.integers(rays - size + 1)), int(rng.integers(rays - size + 1)), size


def render_window(
    components: Dict[str, torch.nn.Module],
    source: torch.Tensor,
    audio_windows: torch.Tensor,
    cameras: torch.Tensor,
    window: Tuple[int, int, int],
    generator: Optional[torch.Generator] = None,
) -> FrameBatch:
    """The reference engine's render of a window of the ray grid, with gradients, the identity encoded on the way.

    Args:
        source: (B, 3, R, R) in [-1, 1]; audio_windows: (B, T, F, W); cameras: (B, T, 4, 4) in the tri-plane frame.
        window: (top, left, p) in rays; the frames (B*T, 3, 4p, 4p), source-major, cover pixels
            [4 top, 4 (top + p)) x [4 left, 4 (left + p)), composited onto the source with its mouth hidden.
    """
    identity = encode_identity(
        components["appearance_encoder"], components["deformation_field"], components["super_resolution"], source, source.shape[-1], composite_onto_hidden=True
    )  # once per source (the single-shot "fit"), shared by its T target frames
    engine = ReferenceEngine(*(components[name] for name in ("audio_encoder", "deformation_field", "renderer", "super_resolution")))
    return engine.render(identity, audio_windows.flatten(0, 1), cameras.flatten(0, 1), generator=generator, ray_window=window)


def _architecture_of(model) -> str:
    """A model's constructor arguments as canonical json (tuples and lists compare equal)."""
    return json.dumps({k: v for k, v in model.config.items() if not k.startswith("_")}, sort_keys=True)


def find_lip_sync(folder: Path) -> Optional[Path]:
    """``folder/lip_sync`` if a lip-sync discriminator is saved there: a pipeline folder, or a run's ``syncnet``."""
    path = Path(folder) / "lip_sync"
    return path if (path / "config.json").is_file() else None


def shipped_lip_sync(config: TrainConfig) -> Optional[Path]:
    """The shipped checkpoint's lip-sync discriminator, when it has the config's architecture (else None)."""
    path = find_lip_sync(DEFAULT_CHECKPOINT)
    if path is None:
        return None
    shipped = LipSyncDiscriminator.from_pretrained(path, use_safetensors=True)
    return path if _architecture_of(shipped) == _architecture_of(LipSyncDiscriminator(**config.components()["lip_sync"])) else None


def warm_start(components: Dict[str, torch.nn.Module], config: TrainConfig, pipeline: Path, reinit: Sequence[str] = ()) -> None:
    """Load the generator components' weights from a pipeline folder (e.g. the shipped checkpoint) into
    ``components``, so training continues from earlier weights with fresh optimisers.

    The weights must fit the config's architecture (every saved parameter exists in it, with the same shape);
    settings that hold no weights (e.g. the audio encoder's feature normalisation, the super-resolution's hidden
    source box) are the config's, so a run can change them and keep what was learnt. Parameters the folder lacks
    are layers the config adds (e.g. the super-resolution's warp head): they keep their initial values, which are
    built to leave the frames as they were. Components named in ``reinit`` keep their seeded random weights (e.g.
    an audio encoder whose output collapsed to a constant, which gradient descent does not easily revive)."""
    if not (pipeline / "model_index.json").is_file():
        raise FileNotFoundError(f"--init-from {pipeline} is not a pipeline folder (it has no model_index.json)")
    unknown = set(reinit) - set(GENERATOR_COMPONENTS)
    if unknown:
        raise ValueError(f"--reinit: {sorted(unknown)} are not generator components; choose from {list(GENERATOR_COMPONENTS)}")
    for name in (n for n in GENERATOR_COMPONENTS if n not in reinit):
        loaded = COMPONENTS[name].from_pretrained(pipeline / name, use_safetensors=True).state_dict()
        expected = components[name].state_dict()
        if not loaded.keys() <= expected.keys() or any(v.shape != expected[k].shape for k, v in loaded.items()):
            raise ValueError(f"--init-from {pipeline}: its {name} weights do not fit the {config.architecture!r} architecture of this config")
        added = sorted(expected.keys() - loaded.keys())
        if added:
            logger.info("--init-from %s: %s has new parameters, kept at their initial values: %s", pipeline, name, ", ".join(added))
        components[name].load_state_dict(loaded, strict=False)


class GeneratorTraining(TrainingRun):
    """Trains the five generator components against the frozen lip-sync and the image discriminator."""

    stage = "generator"

    def __init__(
        self,
        config: TrainConfig,
        data: Path,
        out: Path,
        max_steps: Optional[int] = None,
        syncnet: Optional[Path] = None,
        init_from: Optional[Path] = None,
        reinit: Sequence[str] = (),
    ) -> None:
        super().__init__(config, data, out, max_steps if max_steps is not None else config.max_steps)
        components = build_components(config.components(), seed=config.seed)  # identical on every process
        if init_from is not None:
            warm_start(components, config, Path(init_from), reinit)
        elif reinit:
            raise ValueError("--reinit needs --init-from (without it every component starts from random weights)")
        syncnet = (
            syncnet or find_lip_sync(self.out / "syncnet") or find_lip_sync(self.out / "generator") or (find_lip_sync(init_from) if init_from else None)
        )
        if syncnet is None and config.losses.sync > 0:
            syncnet = shipped_lip_sync(config)
            if syncnet is not None and self.accelerator.is_main_process:
                print(f"no lip-sync discriminator in {self.out} or given with --syncnet: using the shipped one, {syncnet}")
        if syncnet is not None:
            components["lip_sync"] = LipSyncDiscriminator.from_pretrained(syncnet, use_safetensors=True)
            if _architecture_of(components["lip_sync"]) != _architecture_of(LipSyncDiscriminator(**config.components()["lip_sync"])):
                raise ValueError(f"the lip-sync discriminator in {syncnet} does not match the {config.architecture!r} architecture")
        elif config.losses.sync > 0:
            raise FileNotFoundError(
                f"the lip-sync loss needs a pretrained lip-sync discriminator: run `s3d-nerf train --stage syncnet` with "
                f"--out {self.out} first, pass --syncnet PATH, or use a config without it (e.g. {config.architecture}-no_lip_sync)"
            )
        self.syncnet_path = syncnet
        own_copy = self.out / "generator" / "lip_sync"
        if syncnet is not None and self.accelerator.is_main_process and Path(syncnet).resolve() != own_copy.resolve():
            # A copy in the run, so that --export-pipeline (later, without --syncnet, the run folder maybe moved)
            # exports the discriminator this run trained against.
            components["lip_sync"].save_pretrained(own_copy, safe_serialization=True)
        self.components = {name: module.to(self.device) for name, module in components.items()}
        self.lip_sync = self.components["lip_sync"].requires_grad_(False).eval()  # frozen (PAPER.md)
        self.generator_parameters = [p for name in GENERATOR_COMPONENTS for p in self.components[name].parameters()]
        self.optimizer = torch.optim.Adam(self.generator_parameters, lr=config.lr, betas=config.betas)
        self.models = {name: self.components[name] for name in GENERATOR_COMPONENTS}
        self.optimizers = {"generator": self.optimizer}
        self.use_adversarial = config.losses.adversarial > 0
        if self.use_adversarial:
            torch.manual_seed(config.seed + 1)
            base, cap = config.discriminator_channels
            self.discriminator = ImageDiscriminator(SR_SCALE * config.window_rays, base, cap).to(self.device)
            self.discriminator_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=config.discriminator_lr, betas=config.betas)
            self.models["discriminator"] = self.discriminator
            self.optimizers["discriminator"] = self.discriminator_optimizer
        self.perceptual, self.perceptual_backend = build_perceptual_loss(config.perceptual)
        self.perceptual.to(self.device)
        self._evaluation_pairs = None
        self._evaluation_log: Optional[MetricsLog] = None
        if self.accelerator.is_main_process:
            print(f"perceptual backend: {self.perceptual_backend}; lip-sync discriminator: {syncnet or 'none (sync loss off)'}")

    # ------------------------------------------------------------------ one step
    def _audio_windows(self, batch) -> torch.Tensor:
        """Per target frame, the audio encoder's feature window: (B, T, F, W). The front end runs without gradient
        (the mel front end has no weights; an SSL front end stays frozen)."""
        t = self.config.target_frames
        encoder = self.components["audio_encoder"]
        with torch.no_grad():
            windows = [encoder.frame_windows(w.to(self.device), n, fps)[s : s + t] for w, n, fps, s in zip(batch.waveforms, batch.num_frames, batch.fps, batch.starts)]
        return torch.stack(windows)

    def train_step(self) -> Dict[str, float]:
        cfg, w = self.config, self.config.losses
        batch = self.sampler.generator_batch(cfg.batch_size)
        window = choose_window(self.sampler.rng, cfg.ray_resolution, cfg.window_rays, cfg.mouth_patch_probability)
        top, left, size = window
        pixels = slice(SR_SCALE * top, SR_SCALE * (top + size)), slice(SR_SCALE * left, SR_SCALE * (left + size))
        source, targets, cameras = batch.source.to(self.device), batch.targets.to(self.device), batch.cameras.to(self.device)
        real = targets[..., pixels[0], pixels[1]].flatten(0, 1)  # (B*T, 3, 4p, 4p)
        for name in GENERATOR_COMPONENTS:
            self.components[name].train()

        # Generator: L = L_pix + λ_per L_per + λ_adv L_adv + λ_sync L_sync + λ_deform L_deform
        with self.accelerator.autocast():
            rendered = render_window(self.components, source, self._audio_windows(batch), cameras, window, self.render_generator)
            fake = rendered.image.float()  # (B*T, 3, 4p, 4p)
            terms = {"pixel": pixel_loss(fake, real), "deformation": deformation_regulariser(rendered.displacement).to(self.device)}
            if w.perceptual > 0:
                terms["perceptual"] = self.perceptual(fake, real)
            if batch.masks is not None and (w.raw_render > 0 or w.silhouette > 0):
                masks = batch.masks.to(self.device)[..., pixels[0], pixels[1]].flatten(0, 1)  # (B*T, 1, 4p, 4p)
                terms["raw_render"], terms["silhouette"] = raw_render_losses(rendered.coarse_rgb, rendered.opacity, real, masks)
            if self.use_adversarial:
                self.discriminator.requires_grad_(False)
                terms["adversarial"] = generator_adversarial_loss(self.discriminator(fake).float())
            if w.sync > 0:
                pasted = targets.clone()  # the render replaces its window in the ground-truth frames
                pasted[..., pixels[0], pixels[1]] = fake.reshape(*targets.shape[:2], *fake.shape[1:])  # (B, T, 3, 4p, 4p)
                mel = sync_audio_windows(self.lip_sync, batch.waveforms, batch.starts, batch.fps).to(self.device)
                terms["sync"] = lip_sync_loss(sync_logits(self.lip_sync, (pasted.clamp(-1, 1) + 1) / 2, mel).float())
        loss = sum(getattr(w, name) * value for name, value in terms.items())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.step_optimizer(self.optimizer, self.generator_parameters)
        values = {"loss": loss.item(), **{name: value.item() for name, value in terms.items()}}

        # Image discriminator: logistic loss, lazy R1 every r1_interval steps.
        if self.use_adversarial:
            self.discriminator.requires_grad_(True)
            with self.accelerator.autocast():
                d_loss = discriminator_loss(self.discriminator(real).float(), self.discriminator(fake.detach()).float())
                if cfg.r1_interval and self.step % cfg.r1_interval == 0 and w.r1_gamma > 0:
                    real_r1 = real.detach().requires_grad_(True)
                    penalty = r1_penalty(self.discriminator(real_r1).float(), real_r1)
                    d_loss = d_loss + 0.5 * w.r1_gamma * cfg.r1_interval * penalty
                    values["r1"] = penalty.item()
            self.discriminator_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            self.step_optimizer(self.discriminator_optimizer, list(self.discriminator.parameters()))
            values["discriminator"] = d_loss.item()
        return values

    # ------------------------------------------------------------------ evaluation and samples
    def pipeline(self) -> S3DNeRFPipeline:
        return S3DNeRFPipeline(**self.components)

    def _evaluation_set(self, num_pairs: int = 2, frames_per_pair: int = 4):
        """Fixed (source frame, target frames) pairs: held-out identities if any, else training clips."""
        if self._evaluation_pairs is None:
            from ..data.clip import read_clip

            clips = (self.corpus.holdout or self.corpus.train)[:num_pairs]
            pairs = []
            for info in clips:
                clip = read_clip(info.path, load_depth=False)
                targets = np.linspace(0, info.num_frames - 1, frames_per_pair + 1).round().astype(int)[1:]
                pairs.append((clip, 0, targets))
            self._evaluation_pairs = pairs
        return self._evaluation_pairs

    @torch.no_grad()
    def evaluate(self) -> Tuple[float, np.ndarray]:
        """PSNR of full frames rendered through the pipeline's own path, and a sample grid (rows: source |
        ground truth, source | render) as uint8 (H, W, 3)."""
        from ..rendering.cameras import relative_cam2world

        pipe = self.pipeline()
        for module in self.components.values():
            module.eval()
        psnrs, rows = [], []
        for clip, source_index, targets in self._evaluation_set():
            identity = pipe.encode_identity(clip.rgb[source_index], aligned=True)
            windows = pipe.encode_audio(clip.audio, clip.meta.num_frames, clip.meta.fps)[targets]
            cams = relative_cam2world(torch.from_numpy(clip.cam2world[source_index]), torch.from_numpy(clip.cam2world[targets])).to(self.device)
            rendered = pipe.render_frames(identity, windows, cams, fast=False).frames.cpu()  # (n, 3, R, R) in [0, 1]
            truth = frames_to_tensor(clip.rgb[targets], self.resolution)
            psnrs.append(metrics.psnr(to_uint8(rendered), to_uint8(truth)))
            source = frames_to_tensor(clip.rgb[source_index : source_index + 1], self.resolution)
            to_row = lambda images: torch.cat(list(torch.cat([source, images])), dim=-1)  # (3, R, (n+1) R)  # noqa: E731
            rows += [to_row(truth), to_row(rendered)]
        grid = to_uint8(torch.cat(rows, dim=-2)[None])[0]
        return float(np.mean(psnrs)), grid

    def on_step_end(self) -> None:
        cfg = self.config
        due_eval = cfg.eval_every and self.step % cfg.eval_every == 0
        due_sample = cfg.sample_every and self.step % cfg.sample_every == 0
        if not self.accelerator.is_main_process or not (due_eval or due_sample):
            return
        psnr, grid = self.evaluate()
        if due_sample:
            (self.folder / "samples").mkdir(exist_ok=True)
            PIL.Image.fromarray(grid).save(self.folder / "samples" / f"step_{self.step:08d}.png")
        if due_eval:
            if self._evaluation_log is None:
                self._evaluation_log = MetricsLog(self.folder, "eval.csv")
            self._evaluation_log.log(self.step, {"psnr": psnr, "on_held_out": float(bool(self.corpus.holdout))})

    def finish(self) -> Path:
        """Export the pipeline folder and record every process's final state."""
        path = self.out / "pipeline"
        if self.accelerator.is_main_process:
            export_pipeline(self.components, path)
            print(f"pipeline written to {path}")
        self.write_final_state({"perceptual_backend": self.perceptual_backend, "syncnet": str(self.syncnet_path) if self.syncnet_path else None})
        return path


def export_pipeline(components: Dict[str, torch.nn.Module], path: Path) -> None:
    """A diffusers-layout folder that ``S3DNeRFPipeline.from_pretrained`` loads (safetensors weights)."""
    S3DNeRFPipeline(**{name: module.to("cpu") for name, module in components.items()}).save_pretrained(path, safe_serialization=True)


def export_from_checkpoint(config: TrainConfig, out: Path, syncnet: Optional[Path] = None) -> Path:
    """Write ``<out>/pipeline`` from the newest generator checkpoint without training."""
    latest = checkpointing.latest_checkpoint(Path(out) / "generator" / "checkpoints")
    if latest is None:
        raise FileNotFoundError(f"no generator checkpoint under {Path(out) / 'generator' / 'checkpoints'}")
    components = build_components(config.components(), seed=config.seed)
    checkpointing.load_checkpoint(latest, {name: components[name] for name in GENERATOR_COMPONENTS}, {}, rank=0)
    syncnet = syncnet or find_lip_sync(Path(out) / "generator") or find_lip_sync(Path(out) / "syncnet")
    if syncnet is not None:
        components["lip_sync"] = LipSyncDiscriminator.from_pretrained(syncnet, use_safetensors=True)
    path = Path(out) / "pipeline"
    export_pipeline(components, path)
    return path
