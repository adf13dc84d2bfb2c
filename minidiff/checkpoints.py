"""Shipped checkpoints: weights plus a card, verified before use (lesson 05).

A checkpoint NAME is two files in the checkpoint folder (`paths.find_dir("checkpoints")`:
$MINIDIFF_CHECKPOINT_DIR, then <repo>/data/checkpoints, then ~/.cache/minidiff/checkpoints):

    NAME.pt    {"format", "class", "config", "state_dict"}: the model's constructor arguments
               and its weights (tensors only, so it loads with torch.load(weights_only=True))
    NAME.json  the card: sha256 of NAME.pt, the command that reproduces it, the training
               budget and hardware, and measured metrics

`load_checkpoint` refuses a file whose sha256 differs from its card's, and loads with
`weights_only=True`: a .pt file is a pickle, and unpickling a file from elsewhere can
run arbitrary code; weights_only restricts it to tensors and plain containers.
`load_latent_model` (lesson 15) also refuses an autoencoder other than the one named in the
latent model's card.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .autoencoder import Autoencoder
from .latent import check_autoencoder_match
from .paths import find_dir, sha256_file
from .schedules import NoiseSchedule
from .unet import UNet
from .vpred import EpsFromV

FORMAT = "minidiff-checkpoint-1"


class CheckpointError(RuntimeError):
    """A missing, altered or incompatible checkpoint; the message says which and what to do."""


def checkpoint_paths(name_or_path) -> tuple[Path, Path]:
    """(NAME.pt, NAME.json) for a bare name ("unet_mnist": looked up in the checkpoint folder)
    or a path with or without the .pt suffix."""
    p = Path(name_or_path)
    if p.suffix in (".pt", ".json"):
        p = p.with_suffix("")
    if len(p.parts) == 1 and not p.exists() and not p.with_suffix(".pt").exists():
        p = find_dir("checkpoints") / p
    return p.with_suffix(".pt"), p.with_suffix(".json")


def save_checkpoint(model: torch.nn.Module, path, card: dict | None = None, dtype: torch.dtype | None = None) -> dict:
    """Write PATH.pt (config + state_dict, floats cast to `dtype` if given) and PATH.json (card + sha256).

    The model must carry `config` (its constructor arguments), as UNet and MNISTClassifier do.
    Returns the card as written.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise TypeError(f"{type(model).__name__} has no `config` dict of constructor arguments: "
                        "save a minidiff UNet or MNISTClassifier")
    pt, js = checkpoint_paths(path)
    state = {k: (v.detach().to("cpu", dtype) if dtype is not None and v.is_floating_point() else v.detach().cpu())
             .contiguous() for k, v in model.state_dict().items()}
    pt.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "class": type(model).__name__, "config": config, "state_dict": state}, pt)
    card = dict(card or {})
    card.update({"file": pt.name, "sha256": sha256_file(pt), "bytes": pt.stat().st_size,
                 "class": type(model).__name__, "config": config,
                 "dtype": str(dtype or next(iter(state.values())).dtype).removeprefix("torch.")})
    js.write_text(json.dumps(card, indent=2) + "\n")
    return card


def read_card(path) -> dict:
    """The card (NAME.json) of a checkpoint."""
    pt, js = checkpoint_paths(path)
    if not js.exists():
        raise CheckpointError(f"{js}: missing card. Every checkpoint ships NAME.pt with NAME.json "
                              "(its sha256 and how it was made); re-create both with the command that made them.")
    return json.loads(js.read_text())


def update_card(path, **fields) -> dict:
    """Merge `fields` into the card (e.g. metrics=...); the .pt file and its sha256 are untouched."""
    _, js = checkpoint_paths(path)
    card = read_card(path)
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(card.get(key), dict):
            card[key].update(value)
        else:
            card[key] = value
    js.write_text(json.dumps(card, indent=2) + "\n")
    return card


def _verified_payload(path) -> tuple[dict, dict]:
    pt, js = checkpoint_paths(path)
    if not pt.exists():
        raise CheckpointError(f"{pt}: checkpoint file not found. Shipped checkpoints live in the course "
                              "repository's data/checkpoints: run from a clone, or set MINIDIFF_CHECKPOINT_DIR to that folder; "
                              f"or re-create it with the command in its card ({js.name}).")
    card = read_card(path)
    digest = sha256_file(pt)
    if digest != card.get("sha256"):
        raise CheckpointError(f"{pt}: sha256 mismatch: the file hashes to {digest[:16]}…, its card says "
                              f"{str(card.get('sha256'))[:16]}…. The file was altered or truncated: "
                              "restore it (git checkout) or re-create it with the card's command.")
    payload = torch.load(pt, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{pt}: not a minidiff checkpoint (format {payload.get('format') if isinstance(payload, dict) else None!r})")
    return payload, card


def load_state_into(model: torch.nn.Module, state_dict: dict, source: str = "checkpoint") -> torch.nn.Module:
    """model.load_state_dict, with an error that lists the missing / unexpected / mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or shapes:
        def show(keys):
            return ", ".join(keys[:8]) + (f", … ({len(keys)} in all)" if len(keys) > 8 else "") if keys else "none"
        raise CheckpointError(
            f"{source} does not fit this {type(model).__name__} (architecture mismatch).\n"
            f"  missing keys: {show(missing)}\n  unexpected keys: {show(unexpected)}\n"
            f"  shape mismatches: {show(shapes)}\n"
            "Build the model with the checkpoint's config (load_checkpoint(name) does that for you).")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state_dict.items()})
    return model


def load_checkpoint(path, build, device="cpu") -> torch.nn.Module:
    """Verify NAME.pt against its card's sha256, load it with weights_only=True, and return the
    model in eval mode on `device` (float32 weights).

    build: the model class (or any constructor) that takes the stored config as keyword
           arguments, e.g. `load_checkpoint("unet_mnist", UNet)`; or a model already built.
    Raises CheckpointError for a missing file, a hash mismatch, a checkpoint of another class,
    or an architecture mismatch (listing the missing and unexpected keys).
    """
    payload, _ = _verified_payload(path)
    if isinstance(build, torch.nn.Module):
        model = build
    else:
        name = getattr(build, "__name__", None)
        if isinstance(build, type) and name != payload["class"]:
            raise CheckpointError(f"{path}: holds a {payload['class']}, not a {name}: "
                                  f"load it with load_checkpoint({str(path)!r}, {payload['class']})")
        model = build(**payload["config"])
    load_state_into(model, payload["state_dict"], source=str(checkpoint_paths(path)[0]))
    return model.to(device).eval()


def load_eps_model(path, build, device="cpu"):
    """A shipped diffusion model as an ε-model, with the noise schedule it was trained on.

    Returns (eps_model, schedule): the schedule is the card's ("schedule": {"name", "T", and any
    keyword of that schedule's β function such as "beta_1", "beta_T"}), and a
    network trained to predict v (card "prediction": "v", see minidiff.vpred) comes wrapped in
    `EpsFromV`, so that every ε-sampler (ddpm_sample, ddim_sample, guided_sample) uses it unchanged.
    """
    net = load_checkpoint(path, build, device)
    card = read_card(path)
    spec = dict(card.get("schedule", {"name": "linear", "T": 1000}))
    schedule = NoiseSchedule.make(spec.pop("name"), spec.pop("T"), **spec)
    prediction = card.get("prediction", "eps")
    if prediction == "eps":
        return net, schedule
    if prediction == "v":
        return EpsFromV(net, schedule).eval(), schedule
    raise CheckpointError(f"{path}: its card says prediction {prediction!r}; minidiff knows 'eps' and 'v'")


def load_latent_model(path, autoencoder_path, device="cpu"):
    """Lesson 15's latent diffusion model: (eps_model, schedule, autoencoder, scale).

    The latent U-Net's card records the sha256 of the autoencoder whose latents it learned;
    an autoencoder with another hash is refused (CheckpointError) before anything is loaded.
    """
    card, ae_card = read_card(path), read_card(autoencoder_path)
    try:
        check_autoencoder_match(card, ae_card)
    except ValueError as err:
        raise CheckpointError(f"{checkpoint_paths(path)[0]}: {err}") from None
    eps_model, schedule = load_eps_model(path, UNet, device)
    autoencoder = load_checkpoint(autoencoder_path, Autoencoder, device)
    return eps_model, schedule, autoencoder, float(card["latent"]["scale"])
