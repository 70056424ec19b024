"""Resumable training checkpoints in safetensors + json (no pickles anywhere).

Layout of ``<run>/checkpoints/step_00001000/``::

    model_<name>.safetensors       state dict of each trained network
    optimizer_<name>.safetensors   the optimiser's tensors (Adam moments, step counts) ...
    optimizer_<name>.json          ... and everything else in its state dict (hyper-parameters, parameter ids)
    rng_rank<r>.safetensors        torch RNG states of process r (global and render-jitter generators)
    sampler_rank<r>.json           the data sampler's state of process r
    state.json                     step and run metadata, written last

A checkpoint is assembled in a hidden sibling folder and renamed into place, so an interrupted save never
leaves a half checkpoint that ``--resume`` would pick up.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, List, Optional

import torch
from safetensors.torch import load_file, save_file

STEP_PREFIX = "step_"


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"{STEP_PREFIX}{step:08d}"


def staging_dir(root: Path, step: int) -> Path:
    return root / f".{STEP_PREFIX}{step:08d}.partial"


def list_checkpoints(root: Path) -> List[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob(f"{STEP_PREFIX}*") if (p / "state.json").is_file())


def latest_checkpoint(root: Path) -> Optional[Path]:
    found = list_checkpoints(root)
    return found[-1] if found else None


# --------------------------------------------------------------------------------------------- optimisers
def _split_optimizer_state(state: dict):
    """An optimiser state dict -> (tensors for safetensors, the json-able rest)."""
    tensors, per_param = {}, {}
    for param_id, values in state["state"].items():
        per_param[str(param_id)] = {}
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{param_id}.{key}"] = value.detach().cpu().contiguous()
            else:
                per_param[str(param_id)][key] = value
    return tensors, {"state": per_param, "param_groups": state["param_groups"]}


def _join_optimizer_state(tensors: Dict[str, torch.Tensor], rest: dict) -> dict:
    state = {int(pid): dict(values) for pid, values in rest["state"].items()}
    for name, tensor in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = tensor
    return {"state": state, "param_groups": rest["param_groups"]}


# --------------------------------------------------------------------------------------------- save / load
def save_model_states(folder: Path, models: Dict[str, torch.nn.Module], optimizers: Dict[str, torch.optim.Optimizer]) -> None:
    """The main process's part: networks and optimisers."""
    for name, model in models.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, folder / f"model_{name}.safetensors")
    for name, optimizer in optimizers.items():
        tensors, rest = _split_optimizer_state(optimizer.state_dict())
        save_file(tensors, folder / f"optimizer_{name}.safetensors")
        (folder / f"optimizer_{name}.json").write_text(json.dumps(rest))


def save_process_state(folder: Path, rank: int, rng: Dict[str, torch.Tensor], sampler_state: dict) -> None:
    """Every process's part: its RNG and data-sampler state."""
    save_file({k: v.contiguous() for k, v in rng.items()}, folder / f"rng_rank{rank}.safetensors")
    (folder / f"sampler_rank{rank}.json").write_text(json.dumps(sampler_state))


def finalise(staging: Path, final: Path, state: dict, keep: int) -> None:
    """Write ``state.json``, move the checkpoint into place and drop all but the newest ``keep`` checkpoints."""
    (staging / "state.json").write_text(json.dumps(state, indent=2))
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    for old in list_checkpoints(final.parent)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(
    folder: Path,
    models: Dict[str, torch.nn.Module],
    optimizers: Dict[str, torch.optim.Optimizer],
    rank: int,
) -> dict:
    """Restore networks and optimisers in place; returns ``state.json`` plus this process's ``rng`` tensors and
    ``sampler`` state (None when the checkpoint was written by fewer processes)."""
    for name, model in models.items():
        model.load_state_dict(load_file(folder / f"model_{name}.safetensors"))
    for name, optimizer in optimizers.items():
        rest = json.loads((folder / f"optimizer_{name}.json").read_text())
        optimizer.load_state_dict(_join_optimizer_state(load_file(folder / f"optimizer_{name}.safetensors"), rest))
    state = json.loads((folder / "state.json").read_text())
    rng_file, sampler_file = folder / f"rng_rank{rank}.safetensors", folder / f"sampler_rank{rank}.json"
    state["rng"] = load_file(rng_file) if rng_file.is_file() else None
    state["sampler"] = json.loads(sampler_file.read_text()) if sampler_file.is_file() else None
    return state
