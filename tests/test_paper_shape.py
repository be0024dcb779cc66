"""The `qwen3-4b` preset's shapes and dtypes, end to end on a CPU, at a truncated depth.

`model.init=random` builds Qwen3-4B's published architecture (width 2560, 32 query and 8 key-value
heads of 128, MLP 9728, vocabulary 151936, tied embeddings) with random bfloat16 weights, cut to 2
of its 36 layers; the adapter is the preset's (rank 32 per block, alpha 64, all seven projections,
float32). One whole GRPO step of the method's arm (sampling, the sandboxed grader, scoring, the
router, the routed training forward and backward, the pin loss, AdamW), its checkpoint and the PEFT
export run on it: every shape and dtype path of the paper preset except the depth and the counts.
Only the counts are cut (1 prompt x 2 samples x 8 new tokens, one shipped contrastive pair) so
the test stays under a minute of CPU; the rewards are spread (`SpreadRewards`) so that the step
has a gradient.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from evil_moe.config import load_config, preset
from evil_moe.env.grader import Grader
from evil_moe.export import PEFT_WEIGHTS, export_peft, read_adapter_file
from evil_moe.pairs import shipped_pairs_path
from evil_moe.trainer import build_trainer

# (d_in, d_out) of each projection of Qwen3-4B
SHAPES = {"q_proj": (2560, 4096), "k_proj": (2560, 1024), "v_proj": (2560, 1024), "o_proj": (4096, 2560),
          "gate_proj": (2560, 9728), "up_proj": (2560, 9728), "down_proj": (9728, 2560)}


class SpreadRewards:
    """The sandboxed grader, with rewards 0, 1, 0, 1, ... in rollout order: a random model's text
    earns nothing, and a group of equal rewards has no advantage, hence no policy gradient."""

    def __init__(self, grader):
        self.grader = grader

    def grade_batch(self, reqs, progress=False):
        grades = self.grader.grade_batch(reqs, progress)
        return [dataclasses.replace(g, reward=float(i % 2)) for i, g in enumerate(grades)]


def first_pair_file(tmp_path):
    """The shipped pairs file cut after its first pair (header and format unchanged)."""
    text = shipped_pairs_path().read_text(encoding="utf-8")
    second = text.index("\n## ", text.index("\n## ") + 1)
    path = tmp_path / "pairs.md"
    path.write_text(text[: second + 1], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One step of the qwen3-4b preset at 2 layers, with its checkpoint; (trainer, metrics, cfg)."""
    tmp = tmp_path_factory.mktemp("paper_shape")
    cfg = load_config("qwen3-4b", sets=[
        "model.init=random", "model.num_layers=2", "model.device=cpu",
        "sampling.max_new_tokens=8", "sampling.batch_size=2",
        "grpo.prompts_per_step=1", "grpo.group_size=2", "grpo.micro_batch_size=2", "grpo.steps=1",
        # a large step, so that the exported deployed delta is visible through bfloat16 rounding
        "grpo.lr=1e-2", "grpo.warmup_steps=1",
        f"router.pairs={first_pair_file(tmp)}", "env.workers=1",
        f"run.out_dir={tmp / 'run'}", "run.checkpoint_every=1", "run.progress=false"])
    paper = preset("qwen3-4b")
    assert (cfg.model.dtype, cfg.adapter, cfg.run.arm) == ("bfloat16", paper.adapter, "evil_moe")
    with Grader(cfg.env.sandbox()) as grader:
        trainer = build_trainer(cfg, SpreadRewards(grader))
        before = trainer.policy.adapter.state_dict()
        router_before = [p.detach().clone() for p in trainer.routing.parameters()]
        metrics = trainer.train()
    return trainer, metrics, before, router_before


def test_architecture_is_qwen3_4b_at_two_layers_in_bfloat16(run):
    trainer = run[0]
    model, adapter = trainer.policy.model, trainer.policy.adapter
    c = model.config
    assert (c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
            c.vocab_size, c.num_hidden_layers, c.rope_theta if hasattr(c, "rope_theta") else
            c.rope_parameters["rope_theta"]) == (2560, 9728, 32, 8, 128, 151936, 2, 1e6)
    assert model.lm_head.weight is model.get_input_embeddings().weight  # tied, as Qwen3-4B
    base = [p for n, p in model.named_parameters() if ".A_" not in n and ".B_" not in n]
    assert base and all(p.dtype == torch.bfloat16 and not p.requires_grad for p in base)
    assert len(adapter.layers) == 7 * 2
    for name, m in adapter.layers.items():
        d_in, d_out = SHAPES[name.rsplit(".", 1)[-1]]
        assert m.base_layer.weight.shape == (d_out, d_in)
        for key, shape in (("A_dep", (32, d_in)), ("A_quar", (32, d_in)), ("B_dep", (d_out, 32)),
                           ("B_quar", (d_out, 32)), ("A0", (64, d_in)), ("B0", (d_out, 64))):
            t = getattr(m, key)
            assert (tuple(t.shape), t.dtype) == (shape, torch.float32), f"{name}.{key}"


def test_one_routed_step_moves_both_blocks_and_the_router(run):
    trainer, metrics, before, router_before = run
    (m,) = metrics
    assert m["rollouts"] == 2 and all(
        isinstance(m[k], float) and torch.isfinite(torch.tensor(m[k])) for k in ("loss", "pin_loss", "grad_norm"))
    assert 0.0 < m["w_mean"] < 1.0  # the soft router's weights: both blocks got a share
    after = trainer.policy.adapter.state_dict()
    for block in ("A_dep", "B_dep", "A_quar", "B_quar"):
        keys = [k for k in after if k.endswith("." + block)]
        assert all(torch.isfinite(after[k]).all() for k in keys)
        assert any(not torch.equal(after[k], before[k]) for k in keys), block
    for block in ("A0", "B0"):
        assert all(torch.equal(after[k], before[k]) for k in after if k.endswith("." + block))
    assert any(not torch.equal(p, b) for p, b in zip(trainer.routing.parameters(), router_before, strict=True))


def test_checkpoint_and_peft_export_at_paper_shape(run, tmp_path):
    trainer = run[0]
    model, adapter = trainer.policy.model, trainer.policy.adapter
    ckpt = trainer.checkpoint_dir(1)
    tensors, meta = read_adapter_file(ckpt)
    assert (meta["rank"], meta["alpha"], meta["dtype"]) == (32, 64.0, "float32")
    assert all(torch.equal(tensors[k], v) for k, v in adapter.state_dict().items())

    from peft import PeftModel
    from safetensors.torch import load_file

    out = export_peft(ckpt, tmp_path / "peft", "Qwen/Qwen3-4B")
    lora = load_file(out / PEFT_WEIGHTS)
    for key, t in lora.items():
        d_in, d_out = SHAPES[key.split(".")[-3]]
        assert (tuple(t.shape), t.dtype) == (((64, d_in) if ".lora_A." in key else (d_out, 64)), torch.float32)
    # the exported adapter on the plain base (the adapter's wrappers swapped back for their base
    # layers in a copy) gives the deployed model's logits: ours with the hack expert ablated
    plain = copy.deepcopy(model)
    for name in adapter.layers:
        parent, _, attr = name.rpartition(".")
        setattr(plain.get_submodule(parent), attr, plain.get_submodule(name).base_layer)
    peft_model = PeftModel.from_pretrained(plain, str(out)).eval()
    ids = torch.tensor([trainer._prompt_ids(0, trainer.cfg.env.mode)[:24]])  # (1, 24)
    with torch.no_grad():
        exported = peft_model(input_ids=ids).logits.float()
        with adapter.ablate_quarantine():
            deployed = model(input_ids=ids).logits.float()
        with adapter.disabled():
            base = model(input_ids=ids).logits.float()
    moved = (deployed - base).abs().max().item()
    assert moved > 0.0  # the step changed the deployed model
    assert (exported - deployed).abs().max().item() < 0.1 * moved
