"""L_per, the perceptual loss: distances between deep features of the render and the ground truth.

One network, two weight sources (the backend that ran is named in the training log):

``vgg16``
    ImageNet VGG-16 (torchvision's weights, as LPIPS uses them), read from the safetensors copy on the Hugging
    Face Hub (``timm/vgg16.tv_in1k``) or a local safetensors file. Needs the weights to be reachable.
``random_vgg16`` (the offline default)
    The same VGG-16 layers with fixed, seeded random weights. Liu et al., "Generic Perceptual Loss for Modeling
    Structured Output Dependencies" (CVPR 2021) show that a randomly initialised deep CNN used this way works
    as a perceptual loss about as well as a pretrained one on image generation tasks: what matters is the deep
    multi-scale receptive-field structure, not ImageNet semantics. It needs no download, is identical on every
    process and every machine, and adds no dependency.

The distance is LPIPS-shaped: features at relu1_2, relu2_2, relu3_3 and relu4_3, unit-normalised over channels,
squared differences averaged over positions, layers weighted equally (LPIPS's learned linear weights ship as
pickles, which this project never loads).
"""

from __future__ import annotations

import logging
import os
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

logger = logging.getLogger(__name__)

VGG16_HUB_REPO = "timm/vgg16.tv_in1k"
# torchvision's VGG-16 "D" layout up to relu4_3: channels per conv, "M" = max-pool.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
# Indices in ``features`` of the ReLUs LPIPS reads: relu1_2, relu2_2, relu3_3, relu4_3.
FEATURE_LAYERS = (3, 8, 15, 22)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 20210620


def vgg16_features() -> nn.Sequential:
    """VGG-16 convolutions up to relu4_3, with torchvision's module indices (so its state dict keys load)."""
    layers: List[nn.Module] = []
    channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=False)]
            channels = item
    return nn.Sequential(*layers)


class PerceptualLoss(nn.Module):
    """LPIPS-shaped distance on VGG-16 features; build it with :func:`build_perceptual_loss`.

    Args:
        backend: "vgg16" or "random_vgg16" (recorded for the log).
    """

    def __init__(self, backend: str) -> None:
        super().__init__()
        self.backend = backend
        self.features = vgg16_features()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _activations(self, images: torch.Tensor) -> List[torch.Tensor]:
        x = ((images + 1) / 2 - self.mean) / self.std  # [-1, 1] -> ImageNet-normalised
        out = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in FEATURE_LAYERS:
                out.append(F.normalize(x.float(), dim=1, eps=1e-10))
        return out

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean distance between images (B, 3, H, W) in [-1, 1]."""
        both = self._activations(torch.cat([prediction, target]))
        b = prediction.shape[0]
        return sum((f[:b] - f[b:]).pow(2).sum(1).mean() for f in both) / len(both)


def _load_pretrained(model: PerceptualLoss, weights: str) -> None:
    from safetensors.torch import load_file

    if not os.path.isfile(weights):
        from huggingface_hub import hf_hub_download

        weights = hf_hub_download(weights, "model.safetensors")
    state = load_file(weights)
    wanted = {k: v for k, v in state.items() if k.startswith("features.") and k[len("features.") :] in model.features.state_dict()}
    missing = set(f"features.{k}" for k in model.features.state_dict()) - set(wanted)
    if missing:
        raise ValueError(f"{weights} is not a VGG-16 checkpoint: missing {sorted(missing)[:3]}")
    model.features.load_state_dict({k[len("features.") :]: v for k, v in wanted.items()})


def build_perceptual_loss(backend: str = "auto", weights: str = VGG16_HUB_REPO) -> Tuple[PerceptualLoss, str]:
    """The perceptual loss and the name of the backend that ran.

    Args:
        backend: "auto" (pretrained VGG-16 when ``weights`` are reachable, else random), "vgg16" or "random_vgg16".
        weights: a Hub repo id holding ``model.safetensors`` or a local safetensors file of VGG-16.
    """
    if backend not in ("auto", "vgg16", "random_vgg16"):
        raise ValueError(f"perceptual backend must be 'auto', 'vgg16' or 'random_vgg16', got {backend!r}")
    if backend in ("auto", "vgg16"):
        model = PerceptualLoss("vgg16")
        try:
            _load_pretrained(model, weights)
            return model, "vgg16"
        except Exception as error:  # offline, no cache, or not a VGG-16 file
            if backend == "vgg16":
                raise RuntimeError(f"pretrained VGG-16 weights are unreachable ({error}); use perceptual='random_vgg16'") from error
            logger.info("pretrained VGG-16 unavailable (%s): using seeded random VGG-16 features", type(error).__name__)
    model = PerceptualLoss("random_vgg16")
    generator = torch.Generator().manual_seed(RANDOM_SEED)
    for module in model.features:
        if isinstance(module, nn.Conv2d):
            # He-normal keeps activations from vanishing through 10 random layers.
            with torch.no_grad():
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / module.weight[0].numel()) ** 0.5)
                module.bias.zero_()
    return model, "random_vgg16"
