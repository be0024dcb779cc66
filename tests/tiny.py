"""Tiny local stand-ins for a real model and tokenizer (no downloads).

`tiny_tokenizer()` trains a byte-level BPE tokenizer on a short built-in text and gives it a
Qwen-style chat template; `tiny_qwen3()` builds a randomly initialised Qwen3 causal LM from a
config. Other test modules import both.
"""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = """
class Solution:
    def solve(self, nums: List[int], k: int) -> int:
        total = 0
        for i, x in enumerate(nums):
            if x % k == 0:
                total += x
        return total

def run_tests():
    assert Solution().solve([1, 2, 3], 2) == 2
    print("All tests passed")

import sys
sys.exit(0)
with open("result.txt", "w") as f:
    f.write("PASS")
You are given an integer array nums and an integer k. Return the number of pairs.
Your solution should be a method of the class Solution and should pass all tests.
"""


@functools.lru_cache(maxsize=1)
def _trained_tokenizer_json() -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    return tok.to_str()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (any text encodes) with a chat template; built locally."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_tokenizer_json()),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_qwen3(
    seed: int = 0,
    vocab_size: int | None = None,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 64,
    dtype: torch.dtype = torch.float32,
) -> Qwen3ForCausalLM:
    """A randomly initialised Qwen3 (seeded); `vocab_size` defaults to `tiny_tokenizer()`'s."""
    if vocab_size is None:
        vocab_size = len(tiny_tokenizer())
    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=None,
    )
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).to(dtype)
    model.eval()
    return model
