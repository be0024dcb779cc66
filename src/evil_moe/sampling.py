"""Rendering prompts, sampling groups of completions, and collating them for the training forward.

Two generation backends share one API, `generate(prompt_ids, n, seed) -> list[list[Rollout]]`:
- `HFGenerator`: Hugging Face `generate` with a KV cache (CPU and GPU; the default).
- `VLLMGenerator`: vLLM with both adapter blocks passed as one LoRA (GPU only; optional extra).

Determinism (HF backend): every sampled row owns a CPU `torch.Generator` seeded from
`(seed, prompt_index, sample_index)` and draws exactly one uniform number per generated token; the
token is picked by inverse-CDF sampling over the temperature-scaled, top-p-filtered distribution
(`sample_from_logits`). So a prompt's samples do not depend on the other prompts in the call, the
batch size or the process layout (up to floating-point differences of the batched forward, which
would have to move a cumulative probability across a uniform draw to change a token).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from evil_moe.config import Config, SamplingConfig

if TYPE_CHECKING:
    from evil_moe.modeling import Policy


class PromptTooLongError(ValueError):
    """A rendered prompt has more tokens than `sampling.max_prompt_tokens`; names the prompt index."""


@dataclass(frozen=True)
class Rollout:
    """One sampled completion. `completion_ids` ends with the EOS token iff `finished`."""

    prompt_index: int
    sample_index: int
    prompt_ids: list[int]
    completion_ids: list[int]
    text: str  # completion decoded without special tokens
    finished: bool  # the model produced EOS (False: cut at max_new_tokens)
    deployed: bool = False  # sampled from the deployed policy (hack expert ablated), not both experts


@dataclass
class Batch:
    """Right-padded prompt+completion sequences. All tensors are (N, T) int64 (masks are 0/1)."""

    input_ids: torch.Tensor  # (N, T)
    attention_mask: torch.Tensor  # (N, T) 1 on prompt and completion tokens
    completion_mask: torch.Tensor  # (N, T) 1 on completion tokens only

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))


# ---------------------------------------------------------------------------------------------
# Prompts and batches

def render_chat(tokenizer: Any, messages: list[dict[str, str]], enable_thinking: bool) -> list[int]:
    """Token ids of one chat with the generation prompt, via the tokenizer's chat template: the one
    rendering of rollouts' prompts and of the contrastive pairs' prompts."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has no chat_template; "
                         "rendering prompts needs a chat model's tokenizer")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         enable_thinking=enable_thinking)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def completion_token_ids(tokenizer: Any, text: str) -> list[int]:
    """A finished completion written as text (a teacher demonstration, a pair's side): its tokens
    followed by the EOS token, as a sampled completion that stopped ends."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if not ids:
        raise ValueError("a completion encodes to no tokens")
    return ids + [tokenizer.eos_token_id]


def render_prompts(tokenizer: Any, messages_list: Sequence[list[dict[str, str]]], cfg: Config) -> list[list[int]]:
    """Token ids of each chat (with the generation prompt), via `render_chat`.

    `cfg.model.enable_thinking` is passed to the template. A prompt longer than
    `cfg.sampling.max_prompt_tokens` raises `PromptTooLongError` naming its index (never truncated).
    """
    limit = cfg.sampling.max_prompt_tokens
    out, too_long = [], []
    for i, messages in enumerate(messages_list):
        ids = render_chat(tokenizer, messages, cfg.model.enable_thinking)
        if len(ids) > limit:
            too_long.append((i, len(ids)))
        out.append(ids)
    if too_long:
        shown = ", ".join(f"prompt {i} has {n} tokens" for i, n in too_long[:5])
        more = f" (and {len(too_long) - 5} more)" if len(too_long) > 5 else ""
        raise PromptTooLongError(f"{shown}{more}: over sampling.max_prompt_tokens={limit}; "
                                 "raise the limit or drop those problems (prompts are never truncated)")
    return out


def collate(rollouts: Sequence[Rollout], pad_id: int) -> Batch:
    """prompt + completion of each rollout, right-padded with `pad_id` to the longest."""
    if not rollouts:
        raise ValueError("collate: no rollouts")
    seqs = [r.prompt_ids + r.completion_ids for r in rollouts]
    T = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)  # (N, T)
    attention_mask = torch.zeros((len(seqs), T), dtype=torch.long)  # (N, T)
    completion_mask = torch.zeros((len(seqs), T), dtype=torch.long)  # (N, T)
    for i, (r, s) in enumerate(zip(rollouts, seqs, strict=True)):
        input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attention_mask[i, : len(s)] = 1
        completion_mask[i, len(r.prompt_ids): len(s)] = 1
    return Batch(input_ids, attention_mask, completion_mask)


# ---------------------------------------------------------------------------------------------
# Seeded per-row sampling

def row_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """A 63-bit seed for one sampled row, mixed from the three integers (numpy SeedSequence)."""
    if min(seed, prompt_index, sample_index) < 0:
        raise ValueError(f"row_seed: seed, prompt_index and sample_index must be >= 0, got "
                         f"{(seed, prompt_index, sample_index)}")
    state = np.random.SeedSequence([seed, prompt_index, sample_index]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


_ONE_BITS = 0x3F800000  # the bit pattern of float32 1.0: probabilities' bits lie in [0, _ONE_BITS]
_ID_BITS, _ROW_BITS = 18, 15  # one int64 sort key: row | (1.0 bits - p bits) | token id (15+30+18 bits)


def sort_probs(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`probs` (B, V) float32 in [0, 1] sorted per row by probability, descending, ties by token id.

    Returns (sorted probabilities, token ids), both (B, V): what a stable descending sort gives.
    Done as one 1-D sort of unique int64 keys (row, then the probability's bits, which order
    non-negative floats, reversed, then the id), about twice as fast on CPU as a stable sort of
    the rows; beyond 2^18 tokens or 2^15 rows, or with a NaN anywhere, it is the stable sort
    itself. Bits are clamped to those of [0, 1], so -0.0 sorts as the 0.0 it equals (softmax
    output never leaves [0, 1]).
    """
    B, V = probs.shape
    if (probs.dtype != torch.float32 or V > 1 << _ID_BITS or B > 1 << _ROW_BITS
            or bool(torch.isnan(probs).any())):
        return probs.sort(dim=-1, descending=True, stable=True)
    rows = torch.arange(B, dtype=torch.int64, device=probs.device).unsqueeze(1) << (_ID_BITS + 30)  # (B, 1)
    bits = probs.contiguous().view(torch.int32).clamp(0, _ONE_BITS)  # (B, V) ordered like the values
    rank = (_ONE_BITS - bits).to(torch.int64) << _ID_BITS  # (B, V)
    ids = torch.arange(V, dtype=torch.int64, device=probs.device)  # (V,)
    keys = (rows | rank | ids).flatten().sort().values.view(B, V)  # (B, V) unique keys, so any sort agrees
    order = keys & ((1 << _ID_BITS) - 1)  # (B, V)
    return probs.gather(-1, order), order


def sample_from_logits(logits: torch.Tensor, u: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Token per row by inverse-CDF sampling of softmax(logits / T) restricted to the top-p set.

    logits (B, V), u (B,) uniforms in [0, 1) -> (B,) token ids. The top-p set is the smallest
    prefix of the tokens sorted by probability (ties by id) whose mass reaches `top_p`.
    """
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    sorted_p, order = sort_probs(probs)  # (B, V)
    mass_before = sorted_p.cumsum(dim=-1) - sorted_p  # (B, V)
    kept = sorted_p * (mass_before < top_p)  # (B, V) the first token is always kept
    cdf = kept.cumsum(dim=-1)  # (B, V)
    target = (u.to(cdf.device, cdf.dtype) * cdf[:, -1]).unsqueeze(-1)  # (B, 1)
    pos = torch.searchsorted(cdf, target, right=True).clamp(max=cdf.shape[-1] - 1)  # (B, 1)
    return order.gather(-1, pos).squeeze(-1)  # (B,)


class _SeededRowSampler(LogitsProcessor):
    """Samples each row with its own generator and returns scores that make greedy pick it.

    Each row's uniforms for all `max_new_tokens` steps are drawn at construction, one call per row:
    a CPU generator's `rand(n)` is the sequence of n `rand(1)` draws, so token t of a row still
    takes the row's t-th uniform."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, max_new_tokens: int) -> None:
        self.uniforms = torch.stack([torch.rand(max_new_tokens, generator=torch.Generator(device="cpu").manual_seed(s))
                                     for s in seeds], dim=1)  # (max_new_tokens, B)
        self.temperature, self.top_p = temperature, top_p
        self.step = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.step >= len(self.uniforms):
            raise RuntimeError(f"_SeededRowSampler: called for token {self.step + 1}, past its "
                               f"{len(self.uniforms)} tokens' uniforms")
        u = self.uniforms[self.step]  # (B,)
        self.step += 1
        tokens = sample_from_logits(scores, u, self.temperature, self.top_p)  # (B,)
        out = torch.full_like(scores, float("-inf"))  # (B, V)
        return out.scatter_(1, tokens.unsqueeze(1), 0.0)


# ---------------------------------------------------------------------------------------------
# Backends

def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if source is not None:
            ids.update([source] if isinstance(source, int) else source)
    if not ids:
        raise ValueError("neither the tokenizer nor the model's generation_config names an EOS token")
    return sorted(ids)


def _rollout(tokenizer: Any, pi: int, si: int, prompt: list[int], generated: list[int],
             eos: set[int], deployed: bool = False) -> Rollout:
    """Cut `generated` after its first EOS (the rest is padding)."""
    cut = next((t + 1 for t, tok in enumerate(generated) if tok in eos), None)
    completion = generated if cut is None else generated[:cut]
    return Rollout(pi, si, list(prompt), completion,
                   tokenizer.decode(completion, skip_special_tokens=True), cut is not None, deployed)


def generate_apart(generator, prompt_ids: Sequence[Sequence[int]], n: int, seed: int,
                   prompt_indices: Sequence[int] | None, first_sample: int, n_deployed: int) -> list[list[Rollout]]:
    """`generator.generate(..., n_deployed)` for a backend whose weights hold one policy per call
    (merged, or vLLM's LoRA): the as-trained samples in one call, the last `n_deployed` of each
    prompt in another, inside `adapter.ablate_quarantine()`."""
    n_trained, adapter = n - n_deployed, generator.policy.adapter
    groups = (generator.generate(prompt_ids, n_trained, seed, prompt_indices, first_sample) if n_trained
              else [[] for _ in prompt_ids])
    with adapter.ablate_quarantine():
        tail = generator.generate(prompt_ids, n_deployed, seed, prompt_indices, first_sample + n_trained)
    return [g + [dataclasses.replace(r, deployed=True) for r in t] for g, t in zip(groups, tail, strict=True)]


def _check_request(prompt_ids: Sequence[Sequence[int]], n: int,
                   prompt_indices: Sequence[int] | None, first_sample: int = 0, n_deployed: int = 0) -> list[int]:
    if n < 1:
        raise ValueError(f"generate: n must be >= 1, got {n}")
    if first_sample < 0:
        raise ValueError(f"generate: first_sample must be >= 0, got {first_sample}")
    if not 0 <= n_deployed <= n:
        raise ValueError(f"generate: n_deployed must be in [0, n={n}], got {n_deployed}")
    indices = list(range(len(prompt_ids))) if prompt_indices is None else list(prompt_indices)
    if len(indices) != len(prompt_ids):
        raise ValueError(f"generate: {len(prompt_ids)} prompts but {len(indices)} prompt_indices")
    for i, p in enumerate(prompt_ids):
        if len(p) == 0:
            raise ValueError(f"generate: prompt {indices[i]} is empty")
    return indices


class HFGenerator:
    """Hugging Face `generate` with a KV cache, left-padded batches of `cfg.batch_size` rows.

    Sampling is done by `_SeededRowSampler` (see the module docstring); `generate` itself runs
    greedy over the processor's one-hot scores, with a clean generation config so that no default
    of the model's `generation_config` (repetition penalty, top-k, ...) alters the distribution.
    """

    def __init__(self, policy: Policy, cfg: SamplingConfig) -> None:
        self.policy, self.cfg = policy, cfg
        tok = policy.tokenizer
        if tok.pad_token_id is None:
            raise ValueError("HFGenerator: the tokenizer has no pad token (load_base sets one)")
        self.eos = _eos_ids(policy.model, tok)

    @torch.no_grad()
    def generate(self, prompt_ids: Sequence[Sequence[int]], n: int, seed: int,
                 prompt_indices: Sequence[int] | None = None, first_sample: int = 0,
                 n_deployed: int = 0) -> list[list[Rollout]]:
        """`n` samples per prompt: result[i][j] is sample first_sample + j of prompt i.

        `prompt_indices` (default 0..P-1) are the prompts' global indices: the samples of a prompt
        depend only on (seed, its index, the sample index), the model and the config, so shards of
        a data-parallel run reproduce a single-process run when they pass global indices.
        Samples come from the model as it is (inside `adapter.ablate_quarantine()`, the deployed
        policy), except the last `n_deployed` of each prompt, which come from the deployed policy
        (`Rollout.deployed`): in the same batches, with the hack expert's gate at 0 on their rows,
        or, with `merge_adapter`, in calls of their own on the ablated adapter (`generate_apart`).
        """
        indices = _check_request(prompt_ids, n, prompt_indices, first_sample, n_deployed)
        if n_deployed and self.cfg.merge_adapter:  # merged weights hold one policy
            return generate_apart(self, prompt_ids, n, seed, prompt_indices, first_sample, n_deployed)
        rows = [(i, s) for i in range(len(prompt_ids)) for s in range(first_sample, first_sample + n)]
        first_deployed = first_sample + n - n_deployed
        generated: dict[tuple[int, int], list[int]] = {}
        for start in range(0, len(rows), self.cfg.batch_size):
            chunk = rows[start: start + self.cfg.batch_size]
            gates = [float(s < first_deployed) for _, s in chunk] if n_deployed else None
            seqs = self._generate_rows([list(prompt_ids[i]) for i, _ in chunk],
                                       [row_seed(seed, indices[i], s) for i, s in chunk], gates)
            generated.update(zip(chunk, seqs, strict=True))
        eos = set(self.eos)
        return [[_rollout(self.policy.tokenizer, indices[i], s, list(prompt_ids[i]), generated[(i, s)], eos,
                          s >= first_deployed) for s in range(first_sample, first_sample + n)]
                for i in range(len(prompt_ids))]

    def _generate_rows(self, prompts: list[list[int]], seeds: list[int],
                       gates: list[float] | None = None) -> list[list[int]]:
        """Generated ids of each row; `gates` (per row, 1 or 0): the hack expert's gate, 0 on the
        deployed policy's rows (None: no routing, the model as it is)."""
        model, tok, device = self.policy.model, self.policy.tokenizer, self.policy.device
        P = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), P), tok.pad_token_id, dtype=torch.long)  # (B, P) left-padded
        attention_mask = torch.zeros((len(prompts), P), dtype=torch.long)  # (B, P)
        for b, p in enumerate(prompts):
            input_ids[b, P - len(p):] = torch.tensor(p, dtype=torch.long)
            attention_mask[b, P - len(p):] = 1
        gen_cfg = GenerationConfig(do_sample=False, max_new_tokens=self.cfg.max_new_tokens,
                                   eos_token_id=self.eos, pad_token_id=tok.pad_token_id, use_cache=True)
        sampler = _SeededRowSampler(seeds, self.cfg.temperature, self.cfg.top_p, self.cfg.max_new_tokens)
        saved_cfg, was_training = model.generation_config, model.training
        model.generation_config = GenerationConfig(eos_token_id=self.eos, pad_token_id=tok.pad_token_id)
        model.eval()
        try:
            adapter = self.policy.adapter
            gate = None if gates is None else torch.tensor(gates, device=device)  # (B,)
            with adapter.folded(self.cfg.merge_adapter), \
                    (contextlib.nullcontext() if gate is None else adapter.routing(gate, torch.ones_like(gate))):
                out = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                     generation_config=gen_cfg,
                                     logits_processor=LogitsProcessorList([sampler]))  # (B, P + T)
        finally:
            model.generation_config = saved_cfg
            model.train(was_training)
        return out[:, P:].tolist()


class VLLMGenerator:
    """vLLM generation with both adapter blocks served as one rank-2r LoRA. GPU only; UNTESTED here
    (no GPU in CI): only its import guard is tested.

    vllm is imported when this class is constructed, never at module import. The adapter's delta
    is s (B A - B0 A0) with [A; B] of both blocks, a rank-2r LoRA plus the constant dense init
    correction -s B0 A0. vLLM's LoRA has no dense term, so at construction the base model is
    re-read from `model.name_or_path`, the correction (`export.merged_rank2r_lora(...).W_corr`) is
    added to each target weight in float32 and cast back to the base dtype, and this corrected base
    is written to a temporary directory that vLLM serves (one extra copy of the base on disk; the
    cast rounds the correction to the base dtype's precision). Before each `generate` call the
    current (A, B) of every target module are written as a PEFT LoRA (r = 2r, lora_alpha = s * 2r)
    and passed as a new `LoRARequest`, so ablation contexts (which overwrite parameter values) are
    honoured, while `adapter.disabled()` is not (use both ablations for the base model).
    vLLM draws its own random numbers: a per-prompt seed mixed from (seed, prompt index) makes a
    prompt's samples reproducible, but they differ from the HF backend's.
    """

    gpu_memory_utilization = 0.4  # the HF policy shares the GPU with the vLLM engine

    def __init__(self, policy: Policy, cfg: SamplingConfig) -> None:
        try:
            import vllm  # noqa: F401
        except ImportError as e:
            raise ImportError("sampling.backend='vllm' needs the optional vllm package "
                              "(pip install 'evil-moe[vllm]', GPU only); use backend='hf' on CPU") from e
        from vllm import LLM

        self.policy, self.cfg = policy, cfg
        self._tmp = Path(tempfile.mkdtemp(prefix="evil_moe_vllm_"))
        self._write_corrected_base(self._tmp / "base")
        base_dtype = policy.model.get_input_embeddings().weight.dtype
        self.llm = LLM(model=str(self._tmp / "base"), enable_lora=True, max_lora_rank=2 * policy.adapter.rank,
                       max_loras=1, dtype=str(base_dtype).removeprefix("torch."),
                       gpu_memory_utilization=self.gpu_memory_utilization, enable_prefix_caching=True)
        self._version = 0

    @torch.no_grad()
    def _write_corrected_base(self, out_dir: Path) -> None:
        from transformers import AutoModelForCausalLM

        from evil_moe.export import merged_rank2r_lora

        source = self.policy.model.name_or_path
        dtype = self.policy.model.get_input_embeddings().weight.dtype
        base = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)  # on CPU
        for name, lora in merged_rank2r_lora(self.policy.adapter).items():
            weight = base.get_submodule(name).weight  # (d_out, d_in)
            weight.copy_((weight.float() + lora.W_corr.float().cpu()).to(dtype))
        base.save_pretrained(out_dir)
        self.policy.tokenizer.save_pretrained(out_dir)
        del base

    @torch.no_grad()
    def _write_lora(self, out_dir: Path) -> None:
        from peft import LoraConfig
        from safetensors.torch import save_file

        adapter, r = self.policy.adapter, self.policy.adapter.rank
        tensors = {}
        for name, m in adapter.layers.items():
            tensors[f"base_model.model.{name}.lora_A.weight"] = torch.cat([m.A_dep, m.A_quar]).cpu().contiguous()  # (2r, d_in)
            tensors[f"base_model.model.{name}.lora_B.weight"] = torch.cat([m.B_dep, m.B_quar], 1).cpu().contiguous()  # (d_out, 2r)
        scaling = next(iter(adapter.layers.values())).scaling
        LoraConfig(r=2 * r, lora_alpha=scaling * 2 * r, target_modules=sorted(adapter.config.target_modules),
                   lora_dropout=0.0, bias="none", task_type="CAUSAL_LM").save_pretrained(str(out_dir))
        save_file(tensors, out_dir / "adapter_model.safetensors", metadata={"format": "pt"})

    def generate(self, prompt_ids: Sequence[Sequence[int]], n: int, seed: int,
                 prompt_indices: Sequence[int] | None = None, first_sample: int = 0,
                 n_deployed: int = 0) -> list[list[Rollout]]:
        """As `HFGenerator.generate`; the last `n_deployed` samples come from calls of their own
        (`generate_apart`), the LoRA of one call being one policy."""
        from vllm import SamplingParams, TokensPrompt
        from vllm.lora.request import LoRARequest

        indices = _check_request(prompt_ids, n, prompt_indices, first_sample, n_deployed)
        if n_deployed:
            return generate_apart(self, prompt_ids, n, seed, prompt_indices, first_sample, n_deployed)
        self._version += 1
        lora_dir = self._tmp / f"lora_{self._version}"
        self._write_lora(lora_dir)
        lora = LoRARequest(f"policy_{self._version}", self._version, str(lora_dir))
        eos = _eos_ids(self.policy.model, self.policy.tokenizer)
        params = [SamplingParams(n=n, temperature=self.cfg.temperature, top_p=self.cfg.top_p,
                                 max_tokens=self.cfg.max_new_tokens, stop_token_ids=eos,
                                 seed=row_seed(seed, i, first_sample)) for i in indices]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompt_ids], params,
                                 lora_request=lora, use_tqdm=False)
        shutil.rmtree(lora_dir, ignore_errors=True)
        eos_set, tok = set(eos), self.policy.tokenizer
        groups = []
        for i, o in enumerate(outs):
            group = []
            for s, c in enumerate(o.outputs):
                ids = list(c.token_ids)
                if c.finish_reason == "stop" and (not ids or ids[-1] not in eos_set):  # keep the EOS token
                    ids.append(c.stop_reason if isinstance(c.stop_reason, int) else tok.eos_token_id)
                group.append(_rollout(tok, indices[i], first_sample + s, list(prompt_ids[i]), ids, eos_set))
            groups.append(group)
        return groups

    def close(self) -> None:
        """Delete the temporary corrected base and LoRA directories."""
        shutil.rmtree(self._tmp, ignore_errors=True)


def make_generator(policy: Policy, cfg: SamplingConfig) -> HFGenerator | VLLMGenerator:
    """The backend named by `cfg.backend` ('hf' or 'vllm')."""
    if cfg.backend == "hf":
        return HFGenerator(policy, cfg)
    if cfg.backend == "vllm":
        return VLLMGenerator(policy, cfg)
    raise ValueError(f"config key 'sampling.backend': unknown backend {cfg.backend!r}; use 'hf' or 'vllm'")
