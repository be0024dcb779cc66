"""Loading the base model and tokenizer, and building the policy (base + two-expert adapter).

`load_base` gives a frozen Hugging Face causal LM and its tokenizer; `build_policy` attaches the
adapter described by `cfg.adapter`; `load_policy` rebuilds a policy, its router and its config from
a checkpoint directory written by `export.save_checkpoint`.

The adapter's parameters are kept in float32 whatever the base dtype (as PEFT does by default):
with a bfloat16 adapter, an AdamW step of lr 7e-5 on values near 1e-2 is below half a bfloat16
ulp and would mostly round away.

With `model.init = "random"` nothing is downloaded: `random_base` builds the architecture of
`model.name_or_path` (its published configuration, `ARCHITECTURES`, or a local config.json) with
seeded random weights, directly in the configured dtype, and `local_tokenizer` trains a byte-level
BPE tokenizer with Qwen's chat layout on the shipped problems and pairs. That exercises every
shape, dtype and memory path of the paper preset (not its skill) on any machine.
"""

from __future__ import annotations

import functools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evil_moe.config import Config, ConfigError, ModelConfig, from_dict

ADAPTER_DTYPE = torch.float32
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Published configurations of the base models the presets name (Qwen/Qwen3-4B: its config.json on
# the Hugging Face hub), as transformers config kwargs, for `model.init = "random"`.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "Qwen/Qwen3-4B": dict(
        model_type="qwen3", vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, hidden_act="silu",
        max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1000000.0, attention_bias=False,
        attention_dropout=0.0, tie_word_embeddings=True, initializer_range=0.02, use_sliding_window=False,
        max_window_layers=36),
}
RANDOM_INIT_SEED = 0  # the random weights are the same on every build (a checkpoint's base can be rebuilt)
LOCAL_VOCAB = 8192  # the local tokenizer's size; the embedding keeps the architecture's vocab_size
# Qwen3's chat layout; enable_thinking=False gives the empty think block, as Qwen3's own template does
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\n\n</think>\n\n' }}{% endif %}"
    "{% endif %}"
)


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


def architecture_config(model_cfg: ModelConfig):
    """The transformers config of `model_cfg.name_or_path`'s architecture, without its weights:
    `ARCHITECTURES` for a known hub id, else a local directory's config.json; `num_layers` truncates."""
    from transformers import AutoConfig

    name = model_cfg.name_or_path
    if name in ARCHITECTURES:
        kwargs = dict(ARCHITECTURES[name])
        config = AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
    elif Path(name).expanduser().is_dir():
        try:
            config = AutoConfig.from_pretrained(str(Path(name).expanduser()))
        except Exception as e:
            raise OSError(f"model.name_or_path={name!r}: cannot read its config.json ({type(e).__name__}: {e})") from e
    else:
        raise ConfigError(f"config key 'model.name_or_path': {name!r} with model.init='random' must be one of "
                          f"{sorted(ARCHITECTURES)} or a local directory with a config.json")
    if model_cfg.num_layers is not None:
        if model_cfg.num_layers > config.num_hidden_layers:
            raise ConfigError(f"config key 'model.num_layers': {model_cfg.num_layers} is more than the "
                              f"{config.num_hidden_layers} layers of {name!r}")
        config.num_hidden_layers = model_cfg.num_layers
        if getattr(config, "layer_types", None) is not None:
            config.layer_types = config.layer_types[: model_cfg.num_layers]
        if getattr(config, "max_window_layers", None) is not None:
            config.max_window_layers = min(config.max_window_layers, model_cfg.num_layers)
    return config


@functools.lru_cache(maxsize=1)
def _local_tokenizer_json() -> str:
    from evil_moe.env.problems import load_problems
    from evil_moe.pairs import shipped_pairs_path
    from evil_moe.toy import build_tokenizer

    texts = [shipped_pairs_path().read_text(encoding="utf-8")]
    for p in load_problems(None):
        texts += [m["content"] for m in p.prompt] + [p.canonical_solution, p.setup_code, *p.gt_answer]
    return build_tokenizer(texts, vocab_size=LOCAL_VOCAB).backend_tokenizer.to_str()


def local_tokenizer():
    """A byte-level BPE tokenizer (any text encodes) trained here on the shipped problems and pairs,
    with Qwen's special tokens and chat layout: `<|im_end|>` is EOS, `<|endoftext|>` pads (left)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from evil_moe.toy import IM_END, PAD

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_local_tokenizer_json()), eos_token=IM_END,
                                   pad_token=PAD, padding_side="left", chat_template=QWEN_CHAT_TEMPLATE)


def random_base(model_cfg: ModelConfig) -> tuple[Any, Any]:
    """(model, tokenizer): the architecture of `model_cfg` with random weights (seed RANDOM_INIT_SEED)
    made directly in `model_cfg.dtype` (a float32 copy of a 4B model would need 16 GB), on the CPU,
    and `local_tokenizer()`."""
    from transformers import AutoModelForCausalLM
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4 keeps it in modeling_utils
        from transformers.modeling_utils import no_init_weights

    config = architecture_config(model_cfg)
    tokenizer = local_tokenizer()
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"model.name_or_path={model_cfg.name_or_path!r}: the local tokenizer has {len(tokenizer)} "
                         f"tokens, more than the architecture's vocab_size {config.vocab_size}")
    config.pad_token_id, config.eos_token_id, config.bos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id, None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        with no_init_weights():  # torch's own init at construction would be overwritten: skip it
            model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[model_cfg.dtype])
        model.init_weights()  # the architecture's own init (normal(0, initializer_range), norms at 1)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


def _row_major_input(module, args):
    """The head's input with row-major strides, copied only when it has other strides. Not
    `.contiguous()`: `is_contiguous()` ignores the stride of a size-1 dimension, and so does not copy
    the (1, k, d) slice `logits_to_keep` takes of one row's (1, T, d) hidden states, whose batch
    stride T d stops torch's matmul from folding the batch into one matrix product."""
    x = args[0]
    expected, step = [], 1
    for n in reversed(x.shape):
        expected.append(step)
        step *= n
    if x.stride() != tuple(reversed(expected)):
        x = x.clone(memory_format=torch.contiguous_format)
    return (x, *args[1:])


def load_base(model_cfg: ModelConfig) -> tuple[Any, Any]:
    """(model, tokenizer) from a local directory or a hub id, or built by `random_base` when
    `model_cfg.init == "random"`; every model parameter is frozen.

    The model is cast to `model_cfg.dtype`, moved to `model_cfg.device` and left in eval mode.
    A tokenizer without a pad token gets its EOS token as pad token, with a warning. With
    `gradient_checkpointing`, checkpointing is enabled (non-reentrant); Hugging Face applies it
    only while the model is in train mode.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = model_cfg.name_or_path
    device = resolve_device(model_cfg.device)
    if model_cfg.dtype not in DTYPES:
        raise ConfigError(f"config key 'model.dtype': unknown dtype {model_cfg.dtype!r}")
    dtype = DTYPES[model_cfg.dtype]
    if model_cfg.init == "random":
        if name == "toy":
            _check_source(name)
        model, tokenizer = random_base(model_cfg)
    else:
        _check_source(name)
        path = str(Path(name).expanduser()) if Path(name).expanduser().is_dir() else name
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
    head = model.get_output_embeddings()
    if head is not None:
        # Its input is a slice of the hidden states whenever logits_to_keep is used, and on a 3-D
        # input whose batch dimension is not row-major torch's CPU matmul copies the transposed
        # (vocab, width) weight per batch row: 56 s instead of 0.5 s for 2 rows at Qwen3-4B's size
        # in bfloat16, and 10 s instead of 0.1 s for one row's last position (the pairs' forward).
        head.register_forward_pre_hook(_row_major_input)
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
