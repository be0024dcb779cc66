"""load_base / build_policy / load_policy on a tiny Qwen3 saved to a local directory."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import tiny_qwen3, tiny_tokenizer

from evil_moe.config import ConfigError, ModelConfig, from_dict, to_dict
from evil_moe.export import ROUTER_FILE, save_checkpoint
from evil_moe.modeling import build_policy, load_base, load_policy, read_checkpoint_config
from evil_moe.router import CosineRouter


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_qwen3")
    tiny_qwen3(seed=1, hidden=32).save_pretrained(d)
    tiny_tokenizer().save_pretrained(d)
    return d


def _cfg(model_dir, **model):
    return from_dict({"model": {"name_or_path": str(model_dir), "dtype": "float32", "device": "cpu", **model},
                      "adapter": {"rank": 2, "alpha": 4.0, "init_seed": 5}})


IDS = torch.tensor([[1, 20, 30, 40, 50, 60]])


def test_load_base_is_frozen_and_equals_the_saved_model(model_dir):
    model, tok = load_base(_cfg(model_dir).model)
    ref = tiny_qwen3(seed=1, hidden=32)
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training and model.device.type == "cpu"
    loaded, saved = model.state_dict(), ref.state_dict()
    assert set(loaded) == set(saved) and all(torch.equal(loaded[k], saved[k]) for k in saved)
    with torch.no_grad():  # the loaded model may use another attention kernel (sdpa) than eager
        torch.testing.assert_close(model(IDS).logits, ref(IDS).logits, rtol=0, atol=1e-6)
    assert tok.pad_token == "<|endoftext|>" and tok.eos_token == "<|im_end|>"


def test_the_output_head_gets_row_major_inputs(model_dir):
    """`logits_to_keep` slices one row's hidden states to (1, k, d) with batch stride T d, which
    `is_contiguous()` accepts; torch's matmul then copies the transposed head weight per row. The
    head's pre-hook copies such an input to row-major strides (same values) and leaves others alone."""
    model, _ = load_base(_cfg(model_dir).model)
    head, seen = model.get_output_embeddings(), []
    handle = head.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))  # runs after load_base's
    with torch.no_grad():
        keep1 = model(IDS, logits_to_keep=1).logits  # (1, 1, V)
        full = model(IDS).logits  # (1, T, V)
    handle.remove()
    d = model.config.hidden_size
    assert [x.stride() for x in seen] == [(d, d, 1), (IDS.shape[1] * d, d, 1)]
    torch.testing.assert_close(keep1[0, 0], full[0, -1])  # up to the matmuls' blocking


def checkpointing(model) -> bool:
    return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


def test_load_base_dtype_and_gradient_checkpointing(model_dir):
    model, _ = load_base(_cfg(model_dir, dtype="bfloat16", gradient_checkpointing=True).model)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert checkpointing(model)
    plain, _ = load_base(_cfg(model_dir).model)
    assert not checkpointing(plain)


def test_missing_pad_token_is_set_to_eos_with_a_warning(tmp_path):
    tiny_qwen3(seed=1, hidden=32).save_pretrained(tmp_path)
    tok = tiny_tokenizer()
    tok.pad_token = None
    tok.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="no pad token; using its EOS token"):
        _, loaded = load_base(ModelConfig(name_or_path=str(tmp_path), dtype="float32", device="cpu"))
    assert loaded.pad_token_id == loaded.eos_token_id is not None


def test_load_base_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="toy.prepare"):
        load_base(ModelConfig(name_or_path="toy", device="cpu"))
    with pytest.raises(FileNotFoundError, match="nowhere.*not a directory"):
        load_base(ModelConfig(name_or_path=str(tmp_path / "nowhere"), device="cpu"))
    with pytest.raises(OSError, match="cannot load the tokenizer"):  # an empty directory
        load_base(ModelConfig(name_or_path=str(tmp_path), device="cpu"))
    with pytest.raises(ConfigError, match="model.device"):
        load_base(ModelConfig(name_or_path=str(tmp_path), device="tpu:9"))


def test_build_policy_attaches_a_float32_adapter(model_dir):
    cfg = _cfg(model_dir, dtype="bfloat16")
    policy = build_policy(cfg)
    n_layers = policy.model.config.num_hidden_layers
    assert len(policy.adapter.layers) == n_layers * len(cfg.adapter.target_modules)
    trainable = {id(p) for p in policy.model.parameters() if p.requires_grad}
    adapter_params = policy.adapter.deployed_parameters() + policy.adapter.quarantine_parameters()
    assert trainable == {id(p) for p in adapter_params}
    assert {p.dtype for p in adapter_params} == {torch.float32}
    assert all(p.shape[0] == 2 or p.shape[1] == 2 for p in adapter_params)  # rank 2
    assert policy.device == torch.device("cpu")


@torch.no_grad()
def _perturb(adapter, seed):
    g = torch.Generator().manual_seed(seed)
    for p in adapter.deployed_parameters() + adapter.quarantine_parameters():
        p.add_(0.1 * torch.randn(p.shape, generator=g))


def test_load_policy_round_trip(model_dir, tmp_path):
    cfg = _cfg(model_dir)
    policy = build_policy(cfg)
    _perturb(policy.adapter, 0)
    M, r = len(policy.adapter.layers), cfg.adapter.rank
    router = CosineRouter(torch.randn(M, r, generator=torch.Generator().manual_seed(1)), 3.0, 0.25, "v_act")
    save_checkpoint(tmp_path / "ck", policy.adapter, router, to_dict(cfg))
    loaded, loaded_router, loaded_cfg = load_policy(tmp_path / "ck")
    assert loaded_cfg == cfg
    assert set(loaded.adapter.state_dict()) == set(policy.adapter.state_dict())
    for k, v in policy.adapter.state_dict().items():
        assert torch.equal(loaded.adapter.state_dict()[k], v), k
    for k, v in router.state_dict().items():
        assert torch.equal(loaded_router.state_dict()[k], v), k
    assert torch.equal(policy.model(IDS).logits, loaded.model(IDS).logits)
    with policy.adapter.ablate_quarantine(), loaded.adapter.ablate_quarantine():
        assert torch.equal(policy.model(IDS).logits, loaded.model(IDS).logits)
    # a checkpoint without a router (arms that have none) loads with router None
    (tmp_path / "ck" / ROUTER_FILE).unlink()
    again, no_router, _ = load_policy(tmp_path / "ck")
    assert no_router is None and torch.equal(again.model(IDS).logits, policy.model(IDS).logits)


def test_checkpoint_config_errors(model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json: missing"):
        read_checkpoint_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model": {"nmae_or_path": "x"}}))
    with pytest.raises(ConfigError, match=r"config.json.*unknown config key 'model.nmae_or_path'"):
        load_policy(tmp_path)
