"""Training configurations: typed dataclasses, selectable by name or read from a json file.

Named configs: ``demo`` (trainable on a CPU), ``paper`` (512x512, GPU) and ``tiny`` (tests), each combined with
an ablation of PAPER.md's table as ``<base>-<ablation>``: ``demo-no_deformation``, ``demo-naive``,
``demo-concat``, ``demo-no_lip_sync``; ``<base>`` alone is the full model. A json file holds the fields of
:class:`TrainConfig` (missing fields keep their defaults), e.g. what ``s3d-nerf train`` saves as
``<out>/train_config.json``, or ``"extends"`` another such file and holds only what it changes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

from ..configs import ARCHITECTURES, architecture

MIXED_PRECISIONS = ("no", "bf16")  # autocast modes; fp16 is never used (~1000x slower on CPUs)


@dataclass
class LossWeights:
    """λ of each term of L = L_pix + 0.01 L_per + L_adv + 0.5 L_sync + 0.001 L_deform (PAPER.md).

    ``r1_gamma`` (ours, the paper is silent): StyleGAN2's R1 penalty γ/2 E[|∇D(real)|²] on the image discriminator.
    ``raw_render`` and ``silhouette`` (ours): L_raw and L_sil on the coarse render, applied only where the clips
    have head masks (:func:`~s3d_pipeline.training.losses.raw_render_losses`); 0 gives exactly the paper's objective.
    """

    pixel: float = 1.0
    perceptual: float = 0.01
    adversarial: float = 1.0
    sync: float = 0.5
    deformation: float = 0.001
    r1_gamma: float = 1.0
    raw_render: float = 1.0
    silhouette: float = 1.0


@dataclass
class SyncNetConfig:
    """Pretraining of the lip-sync discriminator: each video window picks its aligned audio among shifted and
    mismatched candidates (multi-way matching, :func:`~s3d_pipeline.training.losses.syncnet_loss`).

    Attributes:
        steps: optimisation steps of ``--stage syncnet``.
        batch_size: video windows per step.
        candidates: audio windows per video window: the aligned one and ``candidates - 1`` negatives.
        lr: Adam learning rate.
        min_shift, max_shift: a shifted negative moves the audio by a distinct offset of this many frames, either sign.
        mismatched_fraction: share of the negatives whose audio comes from another clip instead of a shift.
    """

    steps: int = 4000
    batch_size: int = 32
    candidates: int = 9
    lr: float = 1e-4
    min_shift: int = 3
    max_shift: int = 15
    mismatched_fraction: float = 0.25


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data and output folders.

    Attributes:
        architecture: a name from :data:`s3d_pipeline.configs.ARCHITECTURES`.
        architecture_overrides: per-component keyword overrides, e.g. ``{"deformation_field": {"mode": "naive"}}``.
        seed: seeds the weights (identical on every process) and the data order (offset by the process rank).
        max_steps: generator optimisation steps.
        batch_size: (source, target window) pairs per step and process.
        target_frames: T consecutive target frames per pair; the lip-sync loss reads windows of this length, so it
            must equal the lip-sync discriminator's ``num_frames`` when ``losses.sync`` > 0.
        lr, discriminator_lr, betas: Adam for the generator components and the image discriminator.
        lr_warmup_steps: the learning rates rise linearly from 0 over this many steps of the run (0: none). Fresh
            Adam moments make the first updates full-size on every weight (a step of about ``lr`` each); a
            continuation (``--init-from``, a fresh optimiser) needs the warm-up so as not to undo what it starts from.
        patch_rays: side of the square window of the ray grid rendered per step (None: the whole grid). The
            window is rendered at the inference ray spacing and super-resolved against the matching crop of the
            source, so the super-resolution trains at the scale it runs at, for a fraction of a frame's cost.
        mouth_patch_probability: share of steps whose window is centred on the mouth (else anywhere).
        mixed_precision: "no" or "bf16" (autocast; fp16 is never used: it is ~1000x slower on CPUs).
        perceptual: "auto" (pretrained VGG-16 when its weights are reachable, else the offline default),
            "vgg16" (pretrained, fail if unreachable) or "random_vgg16" (the offline default).
        discriminator_channels: (channel_base, max_channels) of the StyleGAN2-style image discriminator.
        r1_interval: lazy R1 regularisation every this many steps (StyleGAN2), scaled by the interval.
        holdout_identities: identities kept out of training for evaluation and sample renders.
        log_every, eval_every, sample_every, checkpoint_every: intervals in steps (0 disables).
        keep_checkpoints: how many step checkpoints to keep (the newest).
    """

    architecture: str = "demo"
    architecture_overrides: Dict[str, dict] = field(default_factory=dict)
    seed: int = 0
    max_steps: int = 100_000
    batch_size: int = 1
    target_frames: int = 5
    lr: float = 2e-4
    discriminator_lr: float = 2e-4
    lr_warmup_steps: int = 0
    betas: Tuple[float, float] = (0.0, 0.99)
    patch_rays: Optional[int] = 32
    mouth_patch_probability: float = 0.5
    mixed_precision: str = "no"
    perceptual: str = "auto"
    discriminator_channels: Tuple[int, int] = (4096, 256)
    r1_interval: int = 16
    losses: LossWeights = field(default_factory=LossWeights)
    syncnet: SyncNetConfig = field(default_factory=SyncNetConfig)
    holdout_identities: int = 1
    log_every: int = 10
    eval_every: int = 1000
    sample_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}: choose one of {sorted(ARCHITECTURES)}")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"mixed_precision must be 'no' or 'bf16' (never fp16), got {self.mixed_precision!r}")
        if self.lr_warmup_steps < 0:
            raise ValueError(f"lr_warmup_steps must be 0 (no warm-up) or more, got {self.lr_warmup_steps}")
        if self.perceptual not in ("auto", "vgg16", "random_vgg16"):
            raise ValueError(f"perceptual must be 'auto', 'vgg16' or 'random_vgg16', got {self.perceptual!r}")
        rays = self.components()["renderer"]["ray_resolution"]
        if self.patch_rays is not None and not (4 <= self.patch_rays <= rays):
            raise ValueError(f"patch_rays must be between 4 and the ray resolution {rays}, got {self.patch_rays}")
        sync_frames = self.components()["lip_sync"].get("num_frames", 5)
        if self.losses.sync > 0 and self.target_frames != sync_frames:
            raise ValueError(f"target_frames ({self.target_frames}) must equal the lip-sync window ({sync_frames}) when the sync loss is on")

    def components(self) -> Dict[str, dict]:
        """The architecture's component keyword arguments with the overrides applied."""
        return architecture(self.architecture, **self.architecture_overrides)

    @property
    def ray_resolution(self) -> int:
        return self.components()["renderer"]["ray_resolution"]

    @property
    def window_rays(self) -> int:
        """Rays per side actually rendered per step."""
        return self.patch_rays or self.ray_resolution

    def to_json(self, path: os.PathLike) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Build from a (json) dict; unknown keys are an error so a typo never passes silently."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training config fields: {sorted(unknown)}")
        data = dict(data)
        nested = {"losses": LossWeights, "syncnet": SyncNetConfig}
        for key, sub in nested.items():
            if key in data:
                sub_known = {f.name for f in dataclasses.fields(sub)}
                if set(data[key]) - sub_known:
                    raise ValueError(f"unknown {key} fields: {sorted(set(data[key]) - sub_known)}")
                data[key] = sub(**data[key])
        for key in ("betas", "discriminator_channels"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


BASE_CONFIGS: Dict[str, TrainConfig] = {
    # 256x256 frames; each step renders a 32x32 window of the 64x64 ray grid (a quarter frame) for T = 5 frames.
    "demo": TrainConfig(architecture="demo", batch_size=1, patch_rays=32, lr=2e-4, max_steps=100_000),
    # 512x512 frames from 128x128 rays; 64x64 windows, a GPU batch of 4 pairs (20 frames).
    "paper": TrainConfig(
        architecture="paper", batch_size=4, patch_rays=64, lr=2e-4, max_steps=300_000, mixed_precision="bf16",
        syncnet=SyncNetConfig(steps=40_000, batch_size=64),
    ),
    # 64x64 frames from 16x16 rays, 8x8 windows: for tests.
    "tiny": TrainConfig(
        architecture="tiny", patch_rays=8, lr=1e-3, discriminator_lr=1e-3, max_steps=20, holdout_identities=0,
        discriminator_channels=(256, 32), perceptual="random_vgg16", log_every=1, eval_every=0, sample_every=10,
        checkpoint_every=10, syncnet=SyncNetConfig(steps=60, batch_size=16, lr=1e-3),
    ),
}

# The paper's ablation table (PAPER.md), as changes to a base config. "full" is the base itself.
ABLATIONS: Dict[str, dict] = {
    "no_deformation": {"architecture_overrides": {"deformation_field": {"mode": "none"}}},
    "naive": {"architecture_overrides": {"deformation_field": {"mode": "naive"}}},
    "concat": {"architecture_overrides": {"deformation_field": {"mode": "concat"}}},
    "no_lip_sync": {"losses": {"sync": 0.0}},
    # Ours: today's image formation, every face pixel generated (no source warped by the render's correspondence).
    "no_warp": {"architecture_overrides": {"super_resolution": {"warp_channels": 0}}},
}


def config_names() -> list:
    return sorted(BASE_CONFIGS) + [f"{b}-{a}" for b in sorted(BASE_CONFIGS) for a in sorted(ABLATIONS)]


def get_config(name_or_path: str, ablation: str = "") -> TrainConfig:
    """A named config (``demo``, ``paper``, ``tiny``, optionally ``-<ablation>``) or a json file of fields, with
    ``ablation`` (a key of :data:`ABLATIONS`) applied on top: ``get_config("recipe.json", "naive")`` is that
    recipe with the naive deformation, so every row of the ablation table can share one recipe and budget."""
    if name_or_path.endswith(".json") or os.path.isfile(name_or_path):
        config = TrainConfig.from_dict(read_recipe(Path(name_or_path)))
    else:
        base, _, suffix = name_or_path.partition("-")
        if base not in BASE_CONFIGS or (suffix and suffix not in ABLATIONS):
            raise ValueError(f"unknown training config {name_or_path!r}: choose one of {config_names()} or a .json file")
        config = with_ablation(BASE_CONFIGS[base], suffix)
    return with_ablation(config, ablation)


def read_recipe(path: Path, _seen: Tuple[Path, ...] = ()) -> dict:
    """The fields of a json config file. ``"extends": "other.json"`` (relative to the file) starts from that
    file's fields and changes only those given, nested fields merged as in :func:`merge_fields`, so a recipe
    that differs from another in a few settings says just those."""
    if not path.is_file():
        raise FileNotFoundError(f"training config file {path} does not exist")
    if path.resolve() in _seen:
        raise ValueError(f"training config {path} extends itself (through {[str(p) for p in _seen]})")
    data = json.loads(path.read_text())
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return merge_fields(read_recipe(path.parent / parent, (*_seen, path.resolve())), data)


def merge_fields(data: dict, changes: dict) -> dict:
    """``data`` with ``changes`` applied, dicts merged two levels deep: ``{"losses": {"sync": 0}}`` changes
    λ_sync only, and ``{"architecture_overrides": {"renderer": {...}}}`` keeps the renderer's other overrides."""
    merged = copy.deepcopy(data)
    for key, value in changes.items():
        if isinstance(value, dict):
            inner = copy.deepcopy(merged.get(key, {}))
            for sub_key, sub_value in value.items():
                inner[sub_key] = {**inner.get(sub_key, {}), **sub_value} if isinstance(sub_value, dict) else sub_value
            merged[key] = inner
        else:
            merged[key] = value
    return merged


def with_ablation(config: TrainConfig, ablation: str) -> TrainConfig:
    """``config`` with one row of the paper's ablation table applied (``""`` or ``"full"``: unchanged), nested
    fields merged (:func:`merge_fields`)."""
    if ablation in ("", "full"):
        return config
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}: choose one of {['full', *sorted(ABLATIONS)]}")
    data = merge_fields(asdict(config), ABLATIONS[ablation])
    return TrainConfig.from_dict(data)
