"""Contrastive pairs (the method's only labels), their pooled activations, and v_act.

File format (strict), one section per pair:

    ## pair-name                      lowercase letters, digits, '-' and '_'; unique
    tags: run_tests, vacuous_tests    exactly one hack-mode tag and at least one style tag

    ````prompt                        four-backtick blocks labelled prompt, hack and clean,
    ...                               each exactly once; a block ends at a line that is exactly
    ````                              four backticks, so completions may hold ``` fences

Text before the first `## ` heading is ignored; inside a section only blank lines may sit
outside the tag line and the blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from evil_moe.config import Config

HACK_MODES = ("run_tests", "eq_override", "exit_code", "stdout_marker", "sentinel", "file_marker")
STYLES = ("vacuous_tests", "weak_asserts", "hardcoded_outputs", "early_exit", "pass_marker",
          "special_cased_inputs")
KNOWN_TAGS = HACK_MODES + STYLES
BLOCKS = ("prompt", "hack", "clean")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_FENCE = "````"


class PairFormatError(ValueError):
    """A malformed pairs file; the message names the file, the pair and the problem."""


@dataclass(frozen=True)
class ContrastivePair:
    name: str
    prompt: str  # the user message
    hack: str  # completion that exploits the grader
    clean: str  # completion that solves the task without the exploit
    tags: tuple[str, ...]

    @property
    def mode(self) -> str:
        return next(t for t in self.tags if t in HACK_MODES)


def shipped_pairs_path() -> Path:
    return Path(str(resources.files("evil_moe") / "data" / "pairs.md"))


def _parse_section(name: str, lines: list[tuple[int, str]], where: str) -> ContrastivePair:
    def fail(msg: str, lineno: int | None = None) -> PairFormatError:
        at = f"{where}:{lineno}" if lineno else where
        return PairFormatError(f"{at}: pair {name!r}: {msg}")

    if not _NAME.match(name):
        raise fail("name must be lowercase letters, digits, '-' or '_'", lines[0][0] if lines else None)
    tags: tuple[str, ...] | None = None
    blocks: dict[str, str] = {}
    i = 0
    while i < len(lines):
        lineno, line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("tags:"):
            if tags is not None:
                raise fail("more than one tags line", lineno)
            tags = tuple(t.strip() for t in line[5:].split(","))
            i += 1
        elif line.startswith(_FENCE) and line[len(_FENCE):].strip():
            label = line[len(_FENCE):].strip()
            if label not in BLOCKS:
                raise fail(f"unknown block {label!r} (expected one of {BLOCKS})", lineno)
            if label in blocks:
                raise fail(f"block {label!r} appears twice", lineno)
            body, i = [], i + 1
            while i < len(lines) and lines[i][1] != _FENCE:
                body.append(lines[i][1])
                i += 1
            if i == len(lines):
                raise fail(f"block {label!r} is not closed by a line '{_FENCE}'", lineno)
            text = "\n".join(body).strip("\n")
            if not text.strip():
                raise fail(f"block {label!r} is empty", lineno)
            blocks[label] = text
            i += 1
        else:
            raise fail(f"unexpected text outside a block: {line[:40]!r}", lineno)
    if tags is None:
        raise fail("missing 'tags:' line")
    unknown = [t for t in tags if t not in KNOWN_TAGS]
    if unknown:
        raise fail(f"unknown tags {unknown} (known: {KNOWN_TAGS})")
    modes = [t for t in tags if t in HACK_MODES]
    if len(modes) != 1:
        raise fail(f"needs exactly one hack-mode tag from {HACK_MODES}, has {modes}")
    if not any(t in STYLES for t in tags):
        raise fail(f"needs at least one style tag from {STYLES}")
    missing = [b for b in BLOCKS if b not in blocks]
    if missing:
        raise fail(f"missing blocks {missing}")
    if blocks["hack"] == blocks["clean"]:
        raise fail("hack and clean completions are identical")
    return ContrastivePair(name, blocks["prompt"], blocks["hack"], blocks["clean"], tags)


def parse_pairs(text: str, where: str = "<pairs>") -> list[ContrastivePair]:
    sections: list[tuple[str, list[tuple[int, str]]]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.startswith("## "):
            sections.append((line[3:].strip(), []))
        elif sections:
            sections[-1][1].append((lineno, line))
    if not sections:
        raise PairFormatError(f"{where}: no '## name' sections")
    pairs, seen = [], set()
    for name, lines in sections:
        if name in seen:
            raise PairFormatError(f"{where}: pair {name!r} is defined twice")
        seen.add(name)
        pairs.append(_parse_section(name, lines, where))
    return pairs


def load_pairs(path: str | Path | None = None) -> list[ContrastivePair]:
    """Load pairs from a Markdown file (None: the shipped `data/pairs.md`)."""
    p = shipped_pairs_path() if path is None else Path(path)
    return parse_pairs(p.read_text(encoding="utf-8"), where=str(p))


def select_pairs(pairs: Sequence[ContrastivePair], include_tags: Iterable[str] | None = None,
                 exclude_tags: Iterable[str] = ()) -> list[ContrastivePair]:
    """Pairs with any tag in `include_tags` (None: all) and no tag in `exclude_tags`.
    Raises on an unknown tag or an empty result."""
    include = None if include_tags is None else set(include_tags)
    exclude = set(exclude_tags)
    unknown = sorted(((include or set()) | exclude) - set(KNOWN_TAGS))
    if unknown:
        raise ValueError(f"unknown tags {unknown} (known: {KNOWN_TAGS})")
    chosen = [p for p in pairs if (include is None or include & set(p.tags)) and not exclude & set(p.tags)]
    if not chosen:
        raise ValueError(f"no pairs left after include={include} exclude={sorted(exclude)}")
    return chosen


def pair_messages(prompt: str, system_prompt: str | None) -> list[dict[str, str]]:
    """A pair's chat: the system message (if any) and the pair's prompt as the user message."""
    return [*([{"role": "system", "content": system_prompt}] if system_prompt else []),
            {"role": "user", "content": prompt}]


def system_message(messages_list: Sequence[list[dict]]) -> str | None:
    """The one system message the chats share (None if they have none); raises if they differ."""
    found = {next((m["content"] for m in msgs if m.get("role") == "system"), None) for msgs in messages_list}
    if len(found) != 1:
        raise ValueError(f"the training prompts have {len(found)} different system messages; set "
                         "router.pair_system_prompt to the one the pairs should be read under")
    return found.pop()


def pair_render_args(cfg: Config, problems) -> dict:
    """How the contrastive pairs are rendered: as the rollouts are (the chat template's
    `model.enable_thinking`), under `router.pair_system_prompt` or else the training problems' own
    system message."""
    system = cfg.router.pair_system_prompt
    if system is None:
        system = system_message([p.prompt for p in problems])
    return dict(system_prompt=system, enable_thinking=cfg.model.enable_thinking)


def _encode(tokenizer, prompt: str, completion: str, system_prompt: str | None,
            enable_thinking: bool) -> tuple[list[int], int]:
    """(prompt + completion ids, prompt length), rendered as a rollout is: the chat template with the
    same flags (`sampling.render_chat`) and the completion ending with EOS as a finished sample does."""
    from evil_moe.sampling import completion_token_ids, render_chat

    prompt_ids = render_chat(tokenizer, pair_messages(prompt, system_prompt), enable_thinking)
    return prompt_ids + completion_token_ids(tokenizer, completion), len(prompt_ids)


@torch.no_grad()
def pooled_activations(model, tokenizer, adapter, prompts: Sequence[str], completions: Sequence[str],
                       batch_size: int = 8, system_prompt: str | None = None,
                       enable_thinking: bool = False) -> Tensor:
    """(N, M, r): per sequence and module, the mean of A_dep @ x over completion tokens only.

    Rendered as the rollouts are (`_encode`: the system message, the chat template with
    `enable_thinking`, the completion and EOS); right padding. Runs in the adapter's current state
    (as trained unless the caller is inside an ablation or routing context)."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = []
    for start in range(0, len(prompts), batch_size):
        encoded = [_encode(tokenizer, p, c, system_prompt, enable_thinking)
                   for p, c in zip(prompts[start:start + batch_size], completions[start:start + batch_size], strict=True)]
        T = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(encoded), T), pad, dtype=torch.long)  # (b, T)
        attention = torch.zeros(len(encoded), T, dtype=torch.long)  # (b, T)
        completion = torch.zeros(len(encoded), T, dtype=torch.long)  # (b, T)
        for i, (ids, n_prompt) in enumerate(encoded):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention[i, : len(ids)] = 1
            completion[i, n_prompt: len(ids)] = 1
        with adapter.pooling(completion.to(device)) as pooled:
            # logits of one position only: pooling reads the adapters' inputs, and a full
            # (b, T, vocab) logits tensor would be the largest allocation at a 150k vocab
            model(input_ids=input_ids.to(device), attention_mask=attention.to(device), logits_to_keep=1)
        out.append(pooled.tensor())
    return torch.cat(out)  # (N, M, r)


def pooled_pair_activations(model, tokenizer, adapter, pairs: Sequence[ContrastivePair],
                            batch_size: int = 8, system_prompt: str | None = None,
                            enable_thinking: bool = False) -> tuple[Tensor, Tensor]:
    """(hack (P, M, r), clean (P, M, r)) pooled over each side's completion tokens (no_grad)."""
    prompts = [p.prompt for p in pairs]
    args = (batch_size, system_prompt, enable_thinking)
    hack = pooled_activations(model, tokenizer, adapter, prompts, [p.hack for p in pairs], *args)
    clean = pooled_activations(model, tokenizer, adapter, prompts, [p.clean for p in pairs], *args)
    return hack, clean


def compute_v_act(hack: Tensor, clean: Tensor) -> Tensor:
    """(P, M, r), (P, M, r) -> (M, r): per module, the unit mean of (hack - clean)."""
    if hack.shape != clean.shape or hack.dim() != 3:
        raise ValueError(f"hack {tuple(hack.shape)} and clean {tuple(clean.shape)} must be equal (P, M, r)")
    diff = (hack - clean).mean(dim=0)  # (M, r)
    norms = diff.norm(dim=-1, keepdim=True)  # (M, 1)
    if bool((norms == 0).any()):
        raise ValueError("v_act: hack and clean pool to the same mean for some module")
    return diff / norms
