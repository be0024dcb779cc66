"""Checkpoints, the PEFT export of the deployed model, and the rank-2r serving form."""

import copy
import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tiny import tiny_qwen3
from transformers import Qwen3ForCausalLM

from evil_moe.adapter import attach_adapter
from evil_moe.export import export_peft, load_checkpoint, main, merged_rank2r_lora, save_checkpoint
from evil_moe.router import CosineRouter

R = 4


def trained(dtype=torch.float32):
    model = tiny_qwen3(vocab_size=400, dtype=dtype)
    base = copy.deepcopy(model)
    adapter = attach_adapter(model, rank=R, alpha=8.0, seed=1)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in adapter.deployed_parameters() + adapter.quarantine_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g).to(p.dtype))
    return model, base, adapter


def ids():
    return torch.randint(3, 400, (2, 7), generator=torch.Generator().manual_seed(0))


def test_checkpoint_round_trip(tmp_path):
    model, _, adapter = trained()
    router = CosineRouter(torch.randn(len(adapter.layers), R), 2.5, 0.1, "v_act")
    config = {"model": {"name_or_path": "tiny"}, "seed": 3}
    save_checkpoint(tmp_path, adapter, router, config, extra_tensors={"v_act": router.u.detach()})
    assert {p.name for p in tmp_path.iterdir()} == {"adapter.safetensors", "router.safetensors", "config.json",
                                                    "extra.safetensors"}
    ck = load_checkpoint(tmp_path, tiny_qwen3(vocab_size=400))
    assert ck.config == config and ck.router.source == "v_act"
    assert torch.equal(ck.router.u, router.u) and ck.router.scale.item() == router.scale.item()
    assert torch.equal(ck.extra["v_act"], router.u.detach())
    x = ids()
    assert torch.equal(ck.adapter.model(x).logits, model(x).logits)
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "bad", adapter, router, {"x": object()})


def test_exported_peft_adapter_reproduces_deployed_model(tmp_path):
    model, base, adapter = trained()
    base.save_pretrained(tmp_path / "base")
    router = CosineRouter(torch.randn(len(adapter.layers), R), 1.0, 0.0, "v_act")
    save_checkpoint(tmp_path / "ckpt", adapter, router, {"model": {"name_or_path": str(tmp_path / "base")}})
    assert main([str(tmp_path / "ckpt"), str(tmp_path / "peft")]) == 0
    cfg = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert cfg["r"] == 2 * R and cfg["base_model_name_or_path"] == str(tmp_path / "base")
    x = ids()
    with torch.no_grad(), adapter.ablate_quarantine():
        deployed = model(x).logits
    peft_model = PeftModel.from_pretrained(Qwen3ForCausalLM.from_pretrained(tmp_path / "base"), tmp_path / "peft")
    with torch.no_grad():
        served = peft_model(x).logits
    torch.testing.assert_close(served, deployed, rtol=0, atol=1e-5)
    assert (served - model(x).logits).abs().max() > 1e-4  # the quarantine block was left out
    export_peft(adapter, tmp_path / "peft2", "tiny")  # the same from a live adapter
    with torch.no_grad():
        again = PeftModel.from_pretrained(Qwen3ForCausalLM.from_pretrained(tmp_path / "base"), tmp_path / "peft2")(x).logits
    assert torch.equal(again, served)


def test_export_cli_fails_clearly_without_base_model(tmp_path, capsys):
    _, _, adapter = trained()
    router = CosineRouter(torch.randn(len(adapter.layers), R), 1.0, 0.0, "v_act")
    save_checkpoint(tmp_path, adapter, router, {"seed": 0})
    assert main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert "model.name_or_path" in capsys.readouterr().err


def test_rank2r_lora_on_corrected_base_equals_as_trained_forward():
    model, base, adapter = trained(dtype=torch.float64)
    lora = merged_rank2r_lora(adapter)
    with torch.no_grad():
        for name, m in lora.items():
            base.get_submodule(name).weight.add_(m.W_corr)
    served = get_peft_model(base, LoraConfig(r=2 * R, lora_alpha=next(iter(lora.values())).scaling * 2 * R,
                                             target_modules=list(adapter.config.target_modules)))
    with torch.no_grad():
        for name, m in lora.items():
            layer = served.base_model.model.get_submodule(name)
            layer.lora_A["default"].weight.copy_(m.A)
            layer.lora_B["default"].weight.copy_(m.B)
        x = ids()
        torch.testing.assert_close(served(x).logits, model(x).logits, rtol=0, atol=1e-10)


def test_export_of_a_moved_checkpoint_loads_with_auto_peft_from_any_directory(tmp_path, monkeypatch):
    """The base is recorded absolute (here given relative to the working directory), so neither
    moving the checkpoint nor loading from elsewhere breaks the export."""
    import shutil

    from peft import AutoPeftModelForCausalLM
    from tiny import tiny_tokenizer

    model, base, adapter = trained()
    work = tmp_path / "work"
    base.save_pretrained(work / "base")
    tiny_tokenizer().save_pretrained(work / "base")
    router = CosineRouter(torch.randn(len(adapter.layers), R), 1.0, 0.0, "v_act")
    save_checkpoint(work / "ckpt", adapter, router, {"model": {"name_or_path": "base"}})  # relative, as on main
    monkeypatch.chdir(work)
    assert main(["ckpt", "peft"]) == 0
    assert json.loads((work / "peft" / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        str(work / "base")
    shutil.move(work / "peft", tmp_path / "moved_peft")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "moved_peft")
    x = ids()
    with torch.no_grad(), adapter.ablate_quarantine():
        deployed = model(x).logits
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, deployed, rtol=0, atol=1e-5)


def test_export_cli_names_a_relative_base_that_does_not_exist_here(tmp_path, monkeypatch, capsys):
    _, _, adapter = trained()
    router = CosineRouter(torch.randn(len(adapter.layers), R), 1.0, 0.0, "v_act")
    save_checkpoint(tmp_path / "ckpt", adapter, router, {"model": {"name_or_path": "runs/x/toy/base"}})
    monkeypatch.chdir(tmp_path)
    assert main(["ckpt", "out"]) == 2
    err = capsys.readouterr().err
    assert "'runs/x/toy/base' does not exist" in err and "--base-model" in err
    assert not (tmp_path / "out").exists()
