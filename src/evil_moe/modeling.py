"""Loading the base model and tokenizer, and building the policy (base + two-expert adapter).

`load_base` gives a frozen Hugging Face causal LM and its tokenizer; `build_policy` attaches the
adapter described by `cfg.adapter`; `load_policy` rebuilds a policy, its router and its config from
a checkpoint directory written by `export.save_checkpoint`.

The adapter's parameters are kept in float32 whatever the base dtype (as PEFT does by default):
with a bfloat16 adapter, an AdamW step of lr 7e-5 on values near 1e-2 is below half a bfloat16
ulp and would mostly round away.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evil_moe.config import Config, ConfigError, ModelConfig, from_dict

ADAPTER_DTYPE = torch.float32


@dataclass
class Policy:
    """The model being trained: base LM with the adapter attached in place, its tokenizer, device."""

    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers PreTrainedTokenizerBase
    adapter: Any  # evil_moe.adapter.ExpertAdapter
    device: torch.device


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda if available, else cpu; anything else is checked by torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"config key 'model.device': {device!r} is not a device ({e})") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"config key 'model.device': {device!r} but CUDA is not available on this machine")
    return dev


def _check_source(name: str) -> None:
    if name == "toy":
        raise ConfigError("config key 'model.name_or_path': 'toy' must first be built with "
                          "evil_moe.toy.prepare(cfg, out_dir), which points it at a local directory")
    looks_local = name.startswith(("/", "./", "../", "~")) or Path(name).exists()
    if looks_local and not Path(name).expanduser().is_dir():
        raise FileNotFoundError(f"config key 'model.name_or_path': {name!r} is not a directory")


def load_base(model_cfg: ModelConfig) -> tuple[Any, Any]:
    """(model, tokenizer) from a local directory or a hub id; every model parameter is frozen.

    The model is cast to `model_cfg.dtype`, moved to `model_cfg.device` and left in eval mode.
    A tokenizer without a pad token gets its EOS token as pad token, with a warning. With
    `gradient_checkpointing`, checkpointing is enabled (non-reentrant); Hugging Face applies it
    only while the model is in train mode.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = model_cfg.name_or_path
    _check_source(name)
    path = str(Path(name).expanduser()) if Path(name).expanduser().is_dir() else name
    device = resolve_device(model_cfg.device)
    try:
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[model_cfg.dtype]
    except KeyError:
        raise ConfigError(f"config key 'model.dtype': unknown dtype {model_cfg.dtype!r}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # transformers raises OSError/ValueError/HF errors with its own wording
        raise OSError(f"model.name_or_path={name!r}: cannot load the tokenizer ({type(e).__name__}: {e})") from e
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except Exception as e:
        raise OSError(f"model.name_or_path={name!r}: cannot load a causal LM ({type(e).__name__}: {e})") from e
    model.to(device)
    model.requires_grad_(False)
    model.eval()
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ValueError(f"model.name_or_path={name!r}: tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
        warnings.warn(f"tokenizer of {name!r} has no pad token; using its EOS token {tokenizer.eos_token!r} "
                      "as pad token (padding is always masked)", stacklevel=2)
    if model_cfg.gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return model, tokenizer


def build_policy(cfg: Config) -> Policy:
    """The base model of `cfg.model` with the two-expert adapter of `cfg.adapter` attached."""
    from evil_moe.adapter import attach_adapter

    model, tokenizer = load_base(cfg.model)
    a = cfg.adapter
    adapter = attach_adapter(model, a.rank, a.alpha, a.target_modules, a.init_seed, dtype=ADAPTER_DTYPE)
    return Policy(model, tokenizer, adapter, resolve_device(cfg.model.device))


def read_checkpoint_config(checkpoint_dir: str | Path) -> Config:
    """The resolved `Config` saved in a checkpoint's config.json (checked like any override)."""
    from evil_moe.export import CONFIG_FILE

    path = Path(checkpoint_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; {checkpoint_dir} is not a checkpoint written by "
                                "export.save_checkpoint")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


def load_policy(checkpoint_dir: str | Path, device: str | None = None,
                cfg: Config | None = None) -> tuple[Policy, Any, Config]:
    """(policy, router or None, config) from a checkpoint directory written by `export.save_checkpoint`.

    The base model is `model.name_or_path` of the saved config; the adapter (with its saved
    hyperparameters and values) and the router are loaded by `export.load_checkpoint`; a checkpoint
    without router.safetensors (arms without a router) gives router None. `device`
    overrides `model.device` (e.g. 'cpu' to inspect a GPU run's checkpoint). `cfg`, if given, is
    used instead of the saved config (e.g. the saved one with model.name_or_path pointed elsewhere).
    """
    from evil_moe import export

    cfg = read_checkpoint_config(checkpoint_dir) if cfg is None else cfg
    if device is not None:
        cfg = from_dict({"model": {"device": device}}, cfg)
    model, tokenizer = load_base(cfg.model)
    dev = resolve_device(cfg.model.device)
    if (Path(checkpoint_dir) / export.ROUTER_FILE).is_file():
        ckpt = export.load_checkpoint(checkpoint_dir, model)
        adapter, router = ckpt.adapter, (ckpt.router.to(dev) if ckpt.router is not None else None)
    else:  # arms without a router ('none', 'oracle') save no router file
        from evil_moe.adapter import attach_adapter

        tensors, a = export.read_adapter_file(checkpoint_dir)
        adapter = attach_adapter(model, a["rank"], a["alpha"], tuple(a["target_modules"]), a["seed"],
                                 a["b_init_std"], None if a["dtype"] is None else getattr(torch, a["dtype"]))
        adapter.load_state_dict(tensors)
        router = None
    return Policy(model, tokenizer, adapter, dev), router, cfg
