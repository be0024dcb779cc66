"""Checks that `evil-moe train` and `evil-moe eval` make before they write anything or load a model.

Each raises `ConfigError` naming the config key and saying what to do:
- `absolute_paths`: every local file a config records becomes absolute, so a checkpoint's
  config.json (and an export's adapter_config.json) still points at it from any directory;
- `check_files`: a problem, pairs or demonstrations file that does not exist is refused (never
  replaced by a default);
- `check_optional_packages`: TensorBoard, W&B or vLLM asked for but not installed names the extra;
- `check_model_source`: a hub id that is neither cached nor reachable is refused at once (no
  download retries), with the hint to set model.name_or_path to a local directory;
- `check_overlap`: evaluation problems that are training problems are refused unless
  eval.allow_overlap;
- `check_resume`: the checkpoint a run would resume from, refused when its config differs from
  this run's in more than the keys of `RESUME_FREE_KEYS`.
Nothing here imports torch.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from evil_moe.config import Config, ConfigError, from_dict, to_dict

# Keys a resumed run may change: the length of the run, where the run directory now is, and how
# the run is shown and logged.
RESUME_FREE_KEYS = ("grpo.steps", "run.out_dir", "run.resume", "run.progress", "run.checkpoint_every",
                    "run.tensorboard", "run.wandb_project")
# Keys that name local files or directories (a hub id or a shipped split is left as it is).
PATH_KEYS = ("model.name_or_path", "env.problems", "eval.problems", "router.pairs", "run.teacher_demos")
CHECKPOINT_STATE_FILE = "trainer_state.pt"  # trainer.STATE_FILE: what marks a complete checkpoint
LOGGING_EXTRA = "pip install 'evil-moe[logging]'  (from a clone: pip install -e '.[logging]')"


def looks_like_path(value: str) -> bool:
    """A file or directory name rather than a hub id ('name' or 'owner/name') or a shipped split."""
    return (value.startswith(("/", "./", "../", "~")) or value.endswith((".jsonl", ".json", ".md", ".yaml"))
            or value.count("/") > 1 or Path(value).expanduser().exists())


def _get(cfg: Config, key: str):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def absolute_paths(cfg: Config) -> Config:
    """`cfg` with run.out_dir and every existing local path of PATH_KEYS made absolute."""
    changes: dict = {"run": {"out_dir": str(Path(cfg.run.out_dir).expanduser().resolve())}}
    for key in PATH_KEYS:
        value = _get(cfg, key)
        if isinstance(value, str) and value != "toy" and Path(value).expanduser().exists():
            section, name = key.split(".")
            changes.setdefault(section, {})[name] = str(Path(value).expanduser().resolve())
    return from_dict(changes, cfg)


def check_files(cfg: Config, keys: tuple[str, ...] = PATH_KEYS[1:]) -> None:
    """Refuse a file-valued key whose file does not exist."""
    for key in keys:
        value = _get(cfg, key)
        if isinstance(value, str) and looks_like_path(value) and not Path(value).expanduser().is_file():
            raise ConfigError(f"config key {key!r}: file {value} not found")


def check_optional_packages(cfg: Config) -> None:
    """Refuse a setting whose optional package is missing, naming the install command."""
    needs = []
    if cfg.run.tensorboard:
        needs.append(("run.tensorboard=true", "tensorboard", LOGGING_EXTRA))
    if cfg.run.wandb_project:
        needs.append((f"run.wandb_project={cfg.run.wandb_project!r}", "wandb", LOGGING_EXTRA))
    if cfg.sampling.backend == "vllm":
        needs.append(("sampling.backend=vllm", "vllm", "pip install 'evil-moe[vllm]' (GPU only)"))
    for setting, package, command in needs:
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"config key {setting.split('=')[0]!r}: {setting} needs the {package!r} package, "
                              f"which is not installed: {command}")


def _offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def check_model_source(name: str, key: str = "model.name_or_path", timeout_s: float = 10.0) -> None:
    """A local directory must exist; a hub id must be in the local cache or answer within
    `timeout_s` (not at all when HF_HUB_OFFLINE is set). 'toy' is built locally."""
    if name == "toy":
        return
    hint = (f"set {key} to a local directory holding the model (e.g. --set {key}=/path/to/Qwen3-4B, "
            "a copy made with `huggingface-cli download`)")
    if looks_like_path(name):
        if not Path(name).expanduser().is_dir():
            raise ConfigError(f"config key {key!r}: {name} is not a directory; {hint}")
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return  # in the local cache: loads without the network
    if _offline():
        raise ConfigError(f"config key {key!r}: {name!r} is not in the local Hugging Face cache and "
                          f"HF_HUB_OFFLINE is set; {hint}")
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(name, timeout=timeout_s)
    except Exception as e:  # no network, unknown repo, gated repo: each with its own type
        why = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(f"config key {key!r}: cannot reach {name!r} on the Hugging Face hub "
                          f"({type(e).__name__}: {why}); {hint}") from None


def check_overlap(cfg: Config) -> int:
    """The number of evaluation problems that are training problems (same id or prompt); refused
    when there are any and eval.allow_overlap is false."""
    from evil_moe.env.problems import load_problems, shared_problems

    try:
        train, held = load_problems(cfg.env.problems), load_problems(cfg.eval.problems)
    except (OSError, ValueError, ImportError) as e:
        raise ConfigError(f"config key 'env.problems' or 'eval.problems': {e}") from e
    shared = shared_problems(train, held)
    if shared and not cfg.eval.allow_overlap:
        ids = ", ".join(str(p.id) for p in shared[:5]) + (", ..." if len(shared) > 5 else "")
        raise ConfigError(f"config key 'eval.problems': {len(shared)} of its {len(held)} problems are training "
                          f"problems (env.problems={cfg.env.problems!r}; ids {ids}), so the evaluation would not "
                          "be held-out. Choose disjoint sets (the defaults 'shipped:train' and 'shipped:heldout' "
                          "are), or set eval.allow_overlap=true to evaluate anyway (the report then says so).")
    return len(shared)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint RUN/checkpoints/step_N of a run directory, or None."""
    found = sorted(Path(out_dir).glob(f"checkpoints/step_*[0-9]/{CHECKPOINT_STATE_FILE}"))
    return found[-1].parent if found else None


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_differences(saved: dict, current: dict, ignore: tuple[str, ...] = RESUME_FREE_KEYS) -> list[str]:
    """'key: saved -> current' for every key (outside `ignore`) whose value differs."""
    a, b = _flat(saved), _flat(current)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a.keys() | b.keys())
            if k not in ignore and a.get(k) != b.get(k)]


def check_resume(cfg: Config, ignore: tuple[str, ...] = ()) -> tuple[Path, int] | None:
    """(checkpoint, its step) that this run will resume from, or None (no checkpoint, or
    run.resume false). Refused when the checkpoint's config differs in a key outside
    RESUME_FREE_KEYS and `ignore`."""
    if not cfg.run.resume:
        return None
    ckpt = latest_checkpoint(cfg.run.out_dir)
    if ckpt is None:
        return None
    path = ckpt / "config.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        saved = to_dict(absolute_paths(from_dict(saved)))  # recorded relative paths compare resolved
    except (OSError, json.JSONDecodeError, ConfigError) as e:
        raise ConfigError(f"run.out_dir {cfg.run.out_dir} holds checkpoint {ckpt}, whose {path.name} cannot be "
                          f"read ({e}); start over with `evil-moe train --fresh` or choose another run.out_dir") from e
    diffs = config_differences(saved, to_dict(cfg), RESUME_FREE_KEYS + ignore)
    step = int(ckpt.name.removeprefix("step_"))
    if diffs:
        raise ConfigError(
            f"run.out_dir {cfg.run.out_dir} holds a checkpoint at step {step} ({ckpt}) of a run with other "
            f"settings, so it cannot be resumed: {'; '.join(diffs)}. Resuming may change only "
            f"{', '.join(RESUME_FREE_KEYS)}. Use that run's settings to continue it, start over with "
            "`evil-moe train --fresh` (deletes its checkpoints and logs), or choose another run.out_dir.")
    return ckpt, step


def quiet_loading() -> None:
    """No progress bars from transformers and huggingface_hub while models load (run.progress=false,
    eval --no-progress)."""
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    transformers.utils.logging.disable_progress_bar()
    disable_progress_bars()
