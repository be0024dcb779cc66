"""Checkpoints (safetensors + resolved config) and export of the deployed model as a PEFT LoRA.

A checkpoint directory holds:
- `adapter.safetensors`: `ExpertAdapter.state_dict()`, with the adapter's hyperparameters as JSON
  in the file's metadata (key `adapter_config`), so it can be rebuilt on a fresh base model;
- `router.safetensors`: `u`, `scale`, `bias`, with the direction's source in the metadata;
- `config.json`: the run's resolved config, exactly as given (the base model is read from
  `model.name_or_path` by `evil-moe export-peft`);
- `extra.safetensors`: only when `extra_tensors` are given (e.g. v_act).

The deployed model (quarantine block ablated) has per module the delta s (B_dep A_dep - B0_dep A0_dep),
which is a rank-2r LoRA with A' = [A_dep; A0_dep] and B' = [B_dep, -B0_dep]; PEFT scales a rank-2r
LoRA by lora_alpha / (2r), so lora_alpha = s * 2r (= the adapter's alpha).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from .adapter import BLOCK_KEYS, ExpertAdapter, attach_adapter
from .router import CosineRouter

ADAPTER_FILE, ROUTER_FILE, CONFIG_FILE, EXTRA_FILE = (
    "adapter.safetensors", "router.safetensors", "config.json", "extra.safetensors")
PEFT_WEIGHTS = "adapter_model.safetensors"


@dataclass
class Checkpoint:
    adapter: ExpertAdapter
    router: CosineRouter
    config: dict
    extra: dict[str, Tensor]


def save_checkpoint(directory: str | Path, adapter: ExpertAdapter, router: CosineRouter,
                    config_dict: dict, extra_tensors: dict[str, Tensor] | None = None) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    config_text = json.dumps(config_dict, indent=2, sort_keys=True)  # raises on a non-JSON value
    save_file(adapter.state_dict(), d / ADAPTER_FILE,
              metadata={"adapter_config": json.dumps(adapter.config.to_dict())})
    router_state = {k: v.detach().contiguous().clone() for k, v in router.state_dict().items()}
    save_file(router_state, d / ROUTER_FILE, metadata={"source": router.source})
    if extra_tensors:
        save_file({k: v.detach().contiguous().clone() for k, v in extra_tensors.items()}, d / EXTRA_FILE)
    (d / CONFIG_FILE).write_text(config_text + "\n", encoding="utf-8")
    return d


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (not a checkpoint directory?)")
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def read_adapter_file(directory: str | Path) -> tuple[dict[str, Tensor], dict]:
    """(adapter tensors, adapter hyperparameters) from a checkpoint directory."""
    path = Path(directory) / ADAPTER_FILE
    tensors, meta = _read_safetensors(path)
    if "adapter_config" not in meta:
        raise ValueError(f"{path}: metadata has no 'adapter_config'")
    return tensors, json.loads(meta["adapter_config"])


def load_checkpoint(directory: str | Path, model: nn.Module) -> Checkpoint:
    """Attach an adapter to `model` (a fresh base model) and load adapter, router and config."""
    d = Path(directory)
    tensors, cfg = read_adapter_file(d)
    dtype = None if cfg["dtype"] is None else getattr(torch, cfg["dtype"])
    adapter = attach_adapter(model, cfg["rank"], cfg["alpha"], tuple(cfg["target_modules"]),
                             cfg["seed"], cfg["b_init_std"], dtype)
    adapter.load_state_dict(tensors)
    router_state, router_meta = _read_safetensors(d / ROUTER_FILE)
    router = CosineRouter(router_state["u"], router_state["scale"].item(), router_state["bias"].item(),
                          router_meta.get("source", "loaded"))
    config = json.loads((d / CONFIG_FILE).read_text(encoding="utf-8"))
    extra = _read_safetensors(d / EXTRA_FILE)[0] if (d / EXTRA_FILE).exists() else {}
    return Checkpoint(adapter, router, config, extra)


def _module_names(tensors: dict[str, Tensor]) -> list[str]:
    return sorted({k.rsplit(".", 1)[0] for k in tensors})


def deployed_peft_tensors(tensors: dict[str, Tensor], rank: int, prefix: str = "base_model.model.") -> dict[str, Tensor]:
    """PEFT LoRA weights (rank 2r) of the deployed model from adapter tensors."""
    out = {}
    for name in _module_names(tensors):
        t = {k: tensors[f"{name}.{k}"] for k in BLOCK_KEYS}
        if t["A_dep"].shape[0] != rank:
            raise ValueError(f"{name}.A_dep has {t['A_dep'].shape[0]} rows, expected rank {rank}")
        out[f"{prefix}{name}.lora_A.weight"] = torch.cat([t["A_dep"], t["A0_dep"]]).contiguous()  # (2r, d_in)
        out[f"{prefix}{name}.lora_B.weight"] = torch.cat([t["B_dep"], -t["B0_dep"]], dim=1).contiguous()  # (d_out, 2r)
    return out


def export_peft(dir_or_adapter: str | Path | ExpertAdapter, out_dir: str | Path,
                base_model_name_or_path: str) -> Path:
    """Write a standard PEFT LoRA directory (adapter_config.json + adapter_model.safetensors) for
    the deployed model: the quarantine block ablated, so only the deployed delta is exported.

    A base model given as a local path is recorded absolute, so `AutoPeftModelForCausalLM` loads
    the export from any directory; a hub id is recorded as it is."""
    from peft import LoraConfig

    if Path(base_model_name_or_path).expanduser().exists():
        base_model_name_or_path = str(Path(base_model_name_or_path).expanduser().resolve())

    if isinstance(dir_or_adapter, ExpertAdapter):
        tensors, cfg = dir_or_adapter.state_dict(), dir_or_adapter.config.to_dict()
    else:
        tensors, cfg = read_adapter_file(dir_or_adapter)
    rank, alpha = int(cfg["rank"]), float(cfg["alpha"])
    scaling = alpha / (2 * rank)  # TwoExpertLoRALinear.scaling
    lora_config = LoraConfig(
        r=2 * rank, lora_alpha=scaling * 2 * rank, target_modules=sorted(cfg["target_modules"]),
        lora_dropout=0.0, bias="none", task_type="CAUSAL_LM", base_model_name_or_path=base_model_name_or_path,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lora_config.save_pretrained(str(out))
    save_file(deployed_peft_tensors(tensors, rank), out / PEFT_WEIGHTS, metadata={"format": "pt"})
    return out


@dataclass
class Rank2rLoRA:
    """One module as a rank-2r LoRA on a corrected base weight: W + W_corr + scaling * B @ A."""

    A: Tensor  # (2r, d_in) = [A_dep; A_quar]
    B: Tensor  # (d_out, 2r) = [B_dep, B_quar]
    W_corr: Tensor  # (d_out, d_in) = -scaling * (B0_dep A0_dep + B0_quar A0_quar)
    scaling: float


@torch.no_grad()
def merged_rank2r_lora(adapter: ExpertAdapter) -> dict[str, Rank2rLoRA]:
    """Per module, both blocks as one rank-2r LoRA plus the dense init correction to fold into the
    base weight (for serving the as-trained model, e.g. with vLLM's LoRA support)."""
    out = {}
    for name, m in adapter.layers.items():
        A = torch.cat([m.A_dep, m.A_quar]).clone()  # (2r, d_in)
        B = torch.cat([m.B_dep, m.B_quar], dim=1).clone()  # (d_out, 2r)
        out[name] = Rank2rLoRA(A, B, -m.scaling * (m.B0 @ m.A0), m.scaling)  # B0 @ A0: (d_out, d_in)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="evil-moe export-peft",
        description="Export a checkpoint's deployed model (quarantine block ablated) as a PEFT LoRA adapter.")
    parser.add_argument("checkpoint", type=Path, help="checkpoint directory written by training")
    parser.add_argument("out_dir", type=Path, help="output directory for the PEFT adapter")
    parser.add_argument("--base-model", default=None,
                        help="base model name or path (default: model.name_or_path in the checkpoint's config.json)")
    args = parser.parse_args(argv)
    base = args.base_model
    if base is None:
        config_path = args.checkpoint / CONFIG_FILE
        if not config_path.is_file():
            print(f"export-peft: {config_path} not found", file=sys.stderr)
            return 2
        config = json.loads(config_path.read_text(encoding="utf-8"))
        base = (config.get("model") or {}).get("name_or_path") if isinstance(config, dict) else None
        if not base:
            print(f"export-peft: {config_path} has no model.name_or_path; pass --base-model", file=sys.stderr)
            return 2
        if not Path(base).exists() and (base.startswith((".", "/")) or len(Path(base).parts) > 2):  # not a hub id
            print(f"export-peft: the checkpoint's model.name_or_path {base!r} does not exist (from {Path.cwd()}; "
                  "a relative path was recorded relative to where training ran); run from that directory or "
                  "pass --base-model /path/to/base", file=sys.stderr)
            return 2
    out = export_peft(args.checkpoint, args.out_dir, base)
    print(f"wrote PEFT adapter for {base} to {out}")
    return 0
