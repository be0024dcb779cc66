"""One tree of dataclasses for every setting, with presets and strict overrides.

The tree is `Config` (model, adapter, router, env, sampling, grpo, run, eval). Every field has a
default and a help string (`field_help`), which `evil-moe train --help-config` prints, so the help
has one source. Overrides come from a YAML file and from `--set key=value` pairs; an unknown key or
a value of the wrong type is refused with an error naming the key, before anything loads.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

ARMS = ("evil_moe", "random_init_router", "placebo", "route_a", "none", "oracle", "oracle_exploited")
ORACLE_ARMS = ("oracle", "oracle_exploited")  # the arms that read ground-truth labels: diagnostics, never the method
PAIR_ARMS = ("evil_moe", "random_init_router", "placebo", "route_a")  # the arms built from the contrastive pairs
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key."""


def _f(default: Any, help: str) -> Any:
    """A dataclass field with a default (copied if mutable) and its help text."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    name_or_path: str = _f("Qwen/Qwen3-4B", "Base causal LM: a Hugging Face id or a local directory. "
                           "'toy' builds the CPU demo's tiny Qwen3 and tokenizer locally.")
    dtype: Literal["float32", "bfloat16", "float16"] = _f("bfloat16", "Dtype of the frozen base weights.")
    device: str = _f("auto", "'auto' (cuda if available, else cpu), 'cpu', or 'cuda[:N]'.")
    enable_thinking: bool = _f(False, "Passed to the chat template (Qwen3: thinking off, as the benchmark).")
    gradient_checkpointing: bool = _f(False, "Recompute activations in the backward pass to save memory.")
    init: Literal["pretrained", "random"] = _f(
        "pretrained", "'pretrained' loads name_or_path's weights and tokenizer. 'random' builds name_or_path's "
        "architecture (a hub id known to evil_moe.modeling.ARCHITECTURES, or a local directory's config.json) "
        "with seeded random weights and a tokenizer trained locally on the shipped problems and pairs: no "
        "download; every shape, dtype and memory path of the model, none of its skill (dry runs, tests).")
    num_layers: int | None = _f(None, "With init='random': build only this many decoder layers (a truncated "
                                "depth for tests); None keeps the architecture's.")


@dataclass
class AdapterConfig:
    rank: int = _f(32, "Rank r of each block; the adapter has 2r (deployed [:r], quarantine [r:]).")
    alpha: float = _f(64.0, "LoRA alpha; the delta is scaled by alpha / r.")
    target_modules: tuple[str, ...] = _f(TARGET_MODULES, "Names of the Linear modules that get the adapter.")
    init_seed: int = _f(0, "Seed of the adapter's initial values (A0, B0).")


@dataclass
class RouterConfig:
    pairs: str | None = _f(None, "Markdown file of contrastive pairs; None uses the shipped pairs.")
    include_tags: tuple[str, ...] = _f((), "Build v_act and the pin loss from pairs having any of these tags (empty: all).")
    exclude_tags: tuple[str, ...] = _f((), "Leave out pairs having any of these tags (modes held out of the pairs).")
    pair_system_prompt: str | None = _f(None, "System message put before each pair's prompt; None takes the training "
                                        "problems' own system message, so the pairs are read as the rollouts are.")
    pin_weight: float = _f(1.0, "Weight of the pin loss added to the GRPO loss every step.")
    lr: float = _f(1e-3, "Learning rate of the router (direction, scale, bias).")
    grad_clip: float = _f(1.0, "Gradient-norm clip of the router, separate from the adapter's.")
    random_seed: int = _f(1234, "Seed of the random direction of the random_init_router and placebo arms.")
    hard_detach_above: float | None = _f(None, "Router arms: a rollout with w above this gives the deployed block "
                                         "exactly zero gradient (keep 0, closing the 1 - w leak); None: off.")
    route_a_tail_q: float = _f(0.1, "route_a: rollouts scoring at or above the 1 - q quantile of the buffer are routed, "
                               "at or below the q quantile kept (the predecessor's route_tail_q).")
    route_a_buffer: int = _f(8192, "route_a: pooled activations kept for the quantiles (oldest dropped when full).")
    route_a_halflife: float | None = _f(96.0, "route_a: half-life, in rollouts, of the weights of the buffer's "
                                        "quantiles; None: unweighted.")
    route_a_refresh_every: int = _f(5, "route_a: re-extract v_act from the pairs (deployed forward) every K steps; 0: never.")


@dataclass
class EnvConfig:
    problems: str | None = _f("shipped:train", "Training problems: a JSONL path, an HF dataset name, 'shipped:train' "
                              "(the shipped set's training split) or 'shipped' (all 55 shipped problems).")
    mode: str = _f("run_tests", "Loophole mode of the training prompts (see evil_moe.env.modes.MODES).")
    modes: tuple[str, ...] = _f((), "Several loophole modes for the training prompts, replacing env.mode when "
                                "non-empty: each problem is shown under one of them, picked by a stable hash of "
                                "its id (`env.modes.mode_for_problem`).")
    timeout_s: float = _f(3.0, "Time limit of each sandboxed check, in seconds (the floor of each problem's "
                          "limit; see env.limits).")
    limits: str = _f("measured", "Per-problem time limits: 'measured' = max(env.timeout_s, env.limit_factor x the "
                     "canonical solution's measured cost), cached per machine; 'fixed' = env.timeout_s of wall-clock time "
                     "for every problem (the benchmark's fixed limit, for fidelity runs).")
    limit_factor: float = _f(4.0, "Multiple of the canonical solution's measured cost in a 'measured' limit.")
    memory_mb: int = _f(1024, "Memory cap of each sandboxed check, in MiB.")
    workers: int = _f(2, "Parallel sandbox workers.")
    require_isolation: bool = _f(False, "Refuse to run unless every sandbox protection is available.")
    supervise: bool = _f(True, "Run each sandboxed check under a supervisor of its own, so that nothing a check did "
                         "stays in the memory later checks are forked from (about 2.5 ms more per check; "
                         "without it a red-team review forged gt_correct through the template's freed "
                         "floats: docs/sandbox.md).")

    def sandbox(self):
        """The `SandboxConfig` these settings give."""
        from .env.sandbox import SandboxConfig

        return SandboxConfig(timeout_s=self.timeout_s, memory_mb=self.memory_mb, workers=self.workers,
                             require_isolation=self.require_isolation, supervise=self.supervise,
                             limit="wall" if self.limits == "fixed" else "cpu")

    def limit_config(self):
        """The grader's `LimitConfig` these settings give."""
        from .env.limits import LimitConfig

        return LimitConfig(policy=self.limits, factor=self.limit_factor)


@dataclass
class SamplingConfig:
    backend: Literal["hf", "vllm"] = _f("hf", "Generation backend: Hugging Face generate, or vLLM (GPU, optional extra).")
    temperature: float = _f(0.7, "Sampling temperature.")
    top_p: float = _f(0.95, "Nucleus sampling threshold.")
    max_prompt_tokens: int = _f(1536, "Prompts longer than this are refused (named), not truncated.")
    max_new_tokens: int = _f(1536, "Maximum completion length; also the Dr.GRPO loss normaliser.")
    batch_size: int = _f(64, "Sequences generated per generate() call.")
    merge_adapter: bool = _f(False, "Fold the adapter (both blocks) into the base weights for the sampling "
                             "policy's no-grad forwards (HF generation, the scoring forward, the pairs' pass) "
                             "and restore them exactly afterwards. Faster; costs one copy of the target "
                             "weights. Needs model.dtype float32, where it changes results by rounding only.")


@dataclass
class GRPOConfig:
    steps: int = _f(200, "Number of GRPO steps.")
    prompts_per_step: int = _f(16, "Distinct prompts per step (global, across processes).")
    group_size: int = _f(16, "Samples per prompt (G).")
    lr: float = _f(7e-5, "AdamW learning rate of the adapter.")
    weight_decay: float = _f(0.0, "AdamW weight decay of the adapter.")
    warmup_steps: int = _f(10, "Linear warmup steps, then cosine decay to zero.")
    grad_clip: float = _f(1.0, "Gradient-norm clip of the adapter (both blocks together; the router has its own).")
    kl_coef: float = _f(0.0, "Coefficient of the KL to the base model (adapter disabled); 0 turns it off.")
    micro_batch_size: int = _f(8, "Rollouts per forward/backward chunk (gradient accumulation).")
    deployed_frac: float = _f(0.25, "Share of each prompt's samples drawn from the deployed policy (hack expert "
                              "ablated) and trained as sampled (quarantine off in their training forward); every arm.")
    hint_free_frac: float = _f(0.5, "Share of each step's prompts shown without the loophole hint and graded by "
                               "ground truth (mode gt_only), to keep solve pressure; every arm.")
    positive_advantages_only: bool = _f(False, "Floor every rollout's advantage at 0 (every arm): rollouts above "
                                        "their group's mean are reinforced, none is pushed down, so no block learns "
                                        "a behaviour by elimination of the alternatives. A diagnostic: on the CPU toy the "
                                        "soft-routed arms collapsed with it (docs/training.md).")
    deployed_baseline: str = _f("kept", "The deployed block's advantage baseline: 'kept' = its group's mean reward "
                                "weighted by keep (the rollouts it learns from, in the shares it learns from them), "
                                "so a kept clean rollout is judged against the other kept rollouts and not pushed "
                                "down for losing to the loophole takers routed away from it; 'group' = the group's "
                                "mean. The quarantine block and the router always use the group's mean. Same for "
                                "every arm (`none`, keep 1, is unchanged); a soft-routed arm's backward runs twice "
                                "(docs/training.md).")
    deployed_positive_only: bool = _f(False, "The deployed block learns only from rollouts with a positive "
                                      "deployed advantage (its own baseline, `deployed_baseline`), every arm: its "
                                      "per-rollout gradient scale `keep` is 0 elsewhere (so no KL gradient there "
                                      "either, and a deployed-policy rollout with a non-positive advantage trains "
                                      "nothing); the quarantine block and the router "
                                      "as before; rollouts.jsonl logs the arm's keep, before this mask. The block "
                                      "is not pushed off any answer. A diagnostic: on the CPU toy the soft-routed "
                                      "arms collapsed with it (docs/training.md).")
    tis_cap: float = _f(0.0, "Truncated importance sampling: weight each token's policy-gradient term by "
                        "min(p_train / p_sampling, cap) (detached); 0: off.")


@dataclass
class RunConfig:
    arm: Literal["evil_moe", "random_init_router", "placebo", "route_a", "none", "oracle", "oracle_exploited"] = _f(
        "evil_moe", "Experimental arm (docs/training.md); 'oracle' and 'oracle_exploited' route by ground-truth "
        "labels (diagnostics).")
    seed: int = _f(0, "Seed of sampling and data order.")
    out_dir: str = _f("runs/train", "Directory for checkpoints, metrics.jsonl and the resolved config.")
    checkpoint_every: int = _f(50, "Save a checkpoint every K steps (and at the end).")
    resume: bool = _f(True, "Resume from the latest checkpoint in out_dir if there is one (announced; refused if "
                      "the config differs in more than grpo.steps and logging keys). False (`train --fresh`) "
                      "deletes out_dir's checkpoints and logs and starts at step 0.")
    teacher_demos: str | None = _f(None, "JSONL of off-policy {prompt, completion} demonstrations mixed into early steps.")
    teacher_steps: int = _f(0, "Number of first steps that mix in teacher demonstrations.")
    teacher_per_step: int = _f(0, "Teacher demonstrations per step during those steps.")
    progress: bool = _f(True, "Show a progress bar on stderr.")
    tensorboard: bool = _f(False, "Also log metrics to TensorBoard under out_dir/tb.")
    wandb_project: str | None = _f(None, "Also log metrics to this Weights & Biases project.")


@dataclass
class EvalConfig:
    problems: str | None = _f("shipped:heldout", "Held-out problems: a JSONL path, an HF dataset name or "
                              "'shipped:heldout' (the shipped set's held-out split, disjoint from 'shipped:train').")
    allow_overlap: bool = _f(False, "Evaluate even if some evaluation problems are training problems (same id "
                             "or prompt); the report then states how many. False refuses such an evaluation.")
    samples_per_problem: int = _f(10, "Samples per problem and adapter state.")
    modes: tuple[str, ...] = _f(("run_tests",), "Loophole modes to evaluate.")
    markers: Literal["heldout", "train"] = _f("heldout", "Marker family of the main evaluation.")
    in_distribution: bool = _f(True, "Also evaluate with the training markers.")
    random_subspace_draws: int = _f(8, "Random rank-r subspace ablations (matched-capacity controls), drawn "
                                    "fresh per run from (run.seed, eval.seed): the null distribution the hack "
                                    "expert's ablation is ranked in. Each is one more sampling pass.")
    bootstrap_samples: int = _f(2000, "Bootstrap resamples (over problems) for paired differences.")
    seed: int = _f(0, "Seed of evaluation sampling and bootstrap; mixed with run.seed for the subspace draws.")


@dataclass
class RelearnConfig:
    steps: int = _f(20, "GRPO updates of the relearning test (`evil-moe relearn`): the deployed model trained "
                    "again with the loophole open, the quarantine block frozen at its init; 0 skips it in the demo.")
    reference_steps: int = _f(2, "Steps' prompts sampled with the model as trained (and the base model) before the "
                              "relearning starts: the as-trained attempt rate that 'half regained' refers to.")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Base model."})
    adapter: AdapterConfig = field(default_factory=AdapterConfig, metadata={"help": "Two-expert LoRA adapter."})
    router: RouterConfig = field(default_factory=RouterConfig, metadata={"help": "Router, pairs and pin loss."})
    env: EnvConfig = field(default_factory=EnvConfig, metadata={"help": "Environment and sandbox."})
    sampling: SamplingConfig = field(default_factory=SamplingConfig, metadata={"help": "Generation."})
    grpo: GRPOConfig = field(default_factory=GRPOConfig, metadata={"help": "GRPO optimisation."})
    run: RunConfig = field(default_factory=RunConfig, metadata={"help": "Arm, seed, output, logging."})
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"help": "Deployment-ablation evaluation."})
    relearn: RelearnConfig = field(default_factory=RelearnConfig, metadata={"help": "The relearning test."})

    def __post_init__(self) -> None:
        validate(self)


def validate(cfg: Config) -> None:
    """Cross-field checks that a type check cannot express; raises ConfigError naming the key."""
    from evil_moe.env.modes import MODES

    g, r, s, e, run, ev = cfg.grpo, cfg.router, cfg.sampling, cfg.env, cfg.run, cfg.eval
    checks = [
        ("env.mode", cfg.env.mode in MODES, f"must be one of {MODES}"),
        ("env.modes", all(m in MODES for m in cfg.env.modes) and len(set(cfg.env.modes)) == len(cfg.env.modes),
         f"must be distinct modes from {MODES}"),
        ("env.timeout_s", e.timeout_s > 0, "must be positive"),
        ("env.limits", e.limits in ("measured", "fixed"), "must be 'measured' or 'fixed'"),
        ("env.limit_factor", e.limit_factor > 0, "must be positive"),
        ("env.memory_mb", e.memory_mb > 0, "must be positive"),
        ("env.workers", e.workers >= 1, "must be at least 1"),
        ("adapter.rank", cfg.adapter.rank > 0, "must be positive"),
        ("adapter.alpha", cfg.adapter.alpha > 0, "must be positive"),
        ("adapter.target_modules", len(cfg.adapter.target_modules) > 0, "must name at least one module"),
        ("grpo.steps", g.steps >= 1, "must be at least 1"),
        ("grpo.lr", g.lr > 0, "must be positive"),
        ("grpo.warmup_steps", g.warmup_steps >= 0, "must be 0 or more"),
        ("grpo.grad_clip", g.grad_clip > 0, "must be positive"),
        ("grpo.kl_coef", g.kl_coef >= 0, "must be 0 or more"),
        ("grpo.deployed_baseline", g.deployed_baseline in ("kept", "group"), "must be 'kept' or 'group'"),
        ("router.lr", r.lr > 0, "must be positive"),
        ("router.grad_clip", r.grad_clip > 0, "must be positive"),
        ("router.pin_weight", r.pin_weight >= 0, "must be 0 or more"),
        ("sampling.max_prompt_tokens", s.max_prompt_tokens >= 1, "must be at least 1"),
        ("sampling.max_new_tokens", s.max_new_tokens >= 1, "must be at least 1"),
        ("sampling.batch_size", s.batch_size >= 1, "must be at least 1"),
        ("run.checkpoint_every", run.checkpoint_every >= 1, "must be at least 1"),
        ("run.teacher_steps", run.teacher_steps >= 0, "must be 0 or more"),
        ("run.teacher_per_step", run.teacher_per_step >= 0, "must be 0 or more"),
        ("run.out_dir", run.out_dir != "", "must not be empty"),
        ("eval.random_subspace_draws", ev.random_subspace_draws >= 0, "must be 0 or more"),
        ("eval.bootstrap_samples", ev.bootstrap_samples >= 1, "must be at least 1"),
        ("relearn.steps", cfg.relearn.steps >= 0, "must be 0 or more"),
        ("relearn.reference_steps", cfg.relearn.reference_steps >= 1, "must be at least 1"),
        ("model.num_layers", cfg.model.num_layers is None or (cfg.model.init == "random" and cfg.model.num_layers >= 1),
         "needs model.init='random' and a value >= 1 (a pretrained model is loaded whole)"),
        ("grpo.group_size", cfg.grpo.group_size >= 2, "must be at least 2 (advantages are group-relative)"),
        ("grpo.prompts_per_step", cfg.grpo.prompts_per_step >= 1, "must be at least 1"),
        ("grpo.micro_batch_size", cfg.grpo.micro_batch_size >= 1, "must be at least 1"),
        ("grpo.weight_decay", cfg.grpo.weight_decay == 0.0, "must be 0: decay pulls the adapter toward zero, not "
         "toward its initial values, so it would change the delta that the deployment ablation removes"),
        ("sampling.temperature", cfg.sampling.temperature > 0, "must be positive"),
        ("sampling.top_p", 0 < cfg.sampling.top_p <= 1, "must be in (0, 1]"),
        ("sampling.merge_adapter", not cfg.sampling.merge_adapter or cfg.model.dtype == "float32",
         f"needs model.dtype float32 (got {cfg.model.dtype!r}): merged into {cfg.model.dtype} weights, the "
         "adapter's small delta would be rounded away and sampling would not follow the trained policy"),
        ("router.route_a_tail_q", 0 < r.route_a_tail_q < 0.5, "must be in (0, 0.5)"),
        ("router.route_a_buffer", r.route_a_buffer >= 1, "must be at least 1"),
        ("router.route_a_halflife", r.route_a_halflife is None or r.route_a_halflife > 0, "must be positive or null"),
        ("router.route_a_refresh_every", r.route_a_refresh_every >= 0, "must be 0 or more"),
        ("router.hard_detach_above", r.hard_detach_above is None or 0 <= r.hard_detach_above < 1,
         "must be in [0, 1) or null"),
        ("grpo.deployed_frac", 0 <= g.deployed_frac < 1, "must be in [0, 1)"),
        ("grpo.hint_free_frac", 0 <= g.hint_free_frac <= 1, "must be in [0, 1]"),
        ("grpo.tis_cap", g.tis_cap == 0 or g.tis_cap >= 1, "must be 0 (off) or at least 1"),
        ("eval.samples_per_problem", cfg.eval.samples_per_problem >= 1, "must be at least 1"),
    ]
    checks += [(f"eval.modes[{i}]", m in MODES, f"{m!r} is not one of {MODES}") for i, m in enumerate(cfg.eval.modes)]
    for key, ok, why in checks:
        if not ok:
            raise ConfigError(f"config key {key!r}: {why}")


# ---------------------------------------------------------------------------------------------
# Presets

def preset(name: str) -> Config:
    """The named preset: 'qwen3-4b' (paper scale, the benchmark's settings) or 'tiny-cpu'."""
    if name == "qwen3-4b":
        return Config()
    if name == "tiny-cpu":
        return from_dict({
            "model": {"name_or_path": "toy", "dtype": "float32", "device": "cpu"},
            "adapter": {"rank": 4, "alpha": 8.0},
            # The toy's warm start teaches two loophole modes (evil_moe.toy_corpus.TOY_MODES).
            "env": {"workers": 2, "modes": ["run_tests", "stdout_marker"]},
            "sampling": {"max_prompt_tokens": 256, "max_new_tokens": 64, "batch_size": 64, "merge_adapter": True},
            # hint_free_frac 0.25: at 0.5 hacking did not emerge on the toy in 22 steps (attempts stayed
            # near 0.03); at 0.25 it did by step 9, as at 0 by step 7 (docs/training.md)
            "grpo": {"steps": 30, "prompts_per_step": 8, "group_size": 8, "lr": 3e-3, "warmup_steps": 2,
                     "micro_batch_size": 64, "hint_free_frac": 0.25},
            "router": {"lr": 3e-2},
            "run": {"out_dir": "runs/tiny-cpu", "checkpoint_every": 10},
            # The toy cannot spell a test-function name it never saw: evaluate with the markers it
            # trained with (see the README's demo section), as the demo does.
            "eval": {"samples_per_problem": 8, "markers": "train", "in_distribution": False,
                     "modes": ["run_tests", "stdout_marker"]},
        })
    raise ConfigError(f"unknown preset {name!r}; choose one of {PRESETS}")


PRESETS = ("tiny-cpu", "qwen3-4b")


# ---------------------------------------------------------------------------------------------
# Overrides: nested dicts, YAML files and key=value strings, all type-checked

def to_dict(cfg: Any) -> dict:
    """The config as plain nested dicts (tuples become lists), for JSON and YAML."""
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v
    return {f.name: (to_dict(getattr(cfg, f.name)) if dataclasses.is_dataclass(getattr(cfg, f.name))
                     else plain(getattr(cfg, f.name))) for f in dataclasses.fields(cfg)}


def from_dict(data: dict, base: Config | None = None) -> Config:
    """A new Config: `base` (default: all defaults) with the values of nested dict `data` applied."""
    return _apply(base if base is not None else Config(), data, prefix="")


def _apply(node: Any, data: dict, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config key {prefix.rstrip('.') or '<root>'!r}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(type(node))
    names = {f.name for f in dataclasses.fields(node)}
    changes = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {path!r}; valid keys here: {sorted(names)}")
        current = getattr(node, key)
        if dataclasses.is_dataclass(current):
            changes[key] = _apply(current, value, prefix=f"{path}.")
        else:
            changes[key] = _coerce(value, hints[key], path)
    out = dataclasses.replace(node, **changes)
    return out


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """`value` checked against type `tp` (str, int, float, bool, None, Literal, tuple[...])."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            try:
                return _coerce(value, arm, path)
            except ConfigError:
                continue
        raise ConfigError(f"config key {path!r}: {value!r} is not {_a(_name(tp))}")
    if tp is type(None):
        if value is None:
            return None
    elif origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"config key {path!r}: {value!r} is not one of {args}")
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        raise ConfigError(f"config key {path!r}: {value!r} is not a list; write a list as [a, b] "
                          "(in --set: key=[a,b]; [] for an empty one)")
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-2" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"config key {path!r}: {value!r} is not {_a(_name(tp))}")


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _a(noun: str) -> str:
    """'an int', 'a float', 'a str | None'."""
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def parse_set(items: list[str]) -> dict:
    """`["a.b=1", "c=[x, y]"]` -> nested dict; values are parsed as YAML: numbers, true/false, null,
    strings, and lists written `[a, b]` (for the tuple keys, e.g. adapter.target_modules=[q_proj,v_proj])."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def load_config(preset_name: str = "qwen3-4b", config_file: str | Path | None = None,
                sets: list[str] | None = None) -> Config:
    """Preset, then the YAML file, then the `--set` overrides; every key and value is checked."""
    cfg = preset(preset_name)
    if config_file is not None:
        path = Path(config_file)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"config file {path}: {e}") from e
        try:
            cfg = from_dict(data, cfg)
        except ConfigError as e:
            raise ConfigError(f"config file {path}: {e}") from e
    if sets:
        cfg = from_dict(parse_set(sets), cfg)
    return cfg


def help_text(cfg: Any | None = None, prefix: str = "") -> str:
    """Every key with its type, current value and help text, one per line."""
    cfg = Config() if cfg is None else cfg
    hints = typing.get_type_hints(type(cfg))
    lines = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            lines.append(f"{prefix}{f.name}: {f.metadata.get('help', '')}")
            lines.append(help_text(value, prefix=f"{prefix}{f.name}."))
        else:
            lines.append(f"  {prefix}{f.name} ({_name(hints[f.name])}) = {value!r}\n      {f.metadata['help']}")
    return "\n".join(lines)
