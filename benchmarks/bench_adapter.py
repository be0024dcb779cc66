"""Forward + backward time and activation memory: the two-expert adapter (routing on) against
PEFT's LoRA of rank 2r, on the same small Qwen3 and batch, measured in one run.

    python benchmarks/bench_adapter.py [--device cpu|cuda] [--hidden 384] [--layers 4] [--rank 8]

Timings interleave the variants step by step and report medians of wall time and of the
process's CPU time (the latter is steadier on a shared machine; use --threads 1 there). Memory is the bytes of tensors
saved for backward by one forward (distinct storages), plus peak allocated memory on CUDA.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen3Config, Qwen3ForCausalLM

from evil_moe.adapter import DEFAULT_TARGET_MODULES, attach_adapter, soft_routing


def build(args) -> Qwen3ForCausalLM:
    config = Qwen3Config(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 8 // 3,
                         num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
                         num_key_value_heads=max(1, args.hidden // 192), head_dim=64, tie_word_embeddings=False)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return Qwen3ForCausalLM(config).to(args.device)


def saved_bytes(step) -> int:
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(backward=False)
    return sum(seen.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--rank", type=int, default=8, help="per-block rank r (PEFT gets 2r)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)

    ours_model = build(args)
    peft_model = get_peft_model(copy.deepcopy(ours_model), LoraConfig(
        r=2 * args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, target_modules=list(DEFAULT_TARGET_MODULES)))
    adapter = attach_adapter(ours_model, rank=args.rank, alpha=2 * args.rank)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g).to(dev)
    w = torch.rand(args.batch, generator=g).to(dev).requires_grad_(True)  # stands in for router output

    def loss_of(model):
        logits = model(input_ids=x).logits  # (B, T, V)
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten())

    def ours(backward=True):
        with adapter.routing(*soft_routing(w)):
            loss = loss_of(ours_model)
            if backward:
                loss.backward()

    def peft(backward=True):
        loss = loss_of(peft_model)
        if backward:
            loss.backward()

    variants = {"evil-moe adapter (routing on)": ours, f"peft lora r={2 * args.rank}": peft}
    times = {k: [] for k in variants}
    cpu_times = {k: [] for k in variants}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for step in range(args.steps + 2):
        for name, fn in variants.items():
            ours_model.zero_grad(set_to_none=True)
            peft_model.zero_grad(set_to_none=True)
            w.grad = None
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync()
            if step >= 2:  # two warm-up rounds
                times[name].append(time.perf_counter() - t0)
                cpu_times[name].append(time.process_time() - c0)
    print(f"Qwen3 hidden={args.hidden} layers={args.layers} batch={args.batch}x{args.seq} r={args.rank} "
          f"device={args.device} threads={torch.get_num_threads()} steps={args.steps}")
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu = {k: statistics.median(v) for k, v in cpu_times.items()}
    for name, fn in variants.items():
        mem = saved_bytes(fn) / 2**20
        line = (f"  {name:<30} fwd+bwd median wall {med[name] * 1e3:8.1f} ms  cpu {cpu[name] * 1e3:8.1f} ms"
                f"  saved for backward {mem:6.1f} MiB")
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            fn()
            line += f"   peak allocated {torch.cuda.max_memory_allocated() / 2**20:7.1f} MiB"
        print(line)
    a, b = med["evil-moe adapter (routing on)"], med[f"peft lora r={2 * args.rank}"]
    ca, cb = cpu["evil-moe adapter (routing on)"], cpu[f"peft lora r={2 * args.rank}"]
    print(f"time ratio adapter / peft: wall {a / b:.3f}, cpu {ca / cb:.3f} (target <= 1.25)")


if __name__ == "__main__":
    main()
