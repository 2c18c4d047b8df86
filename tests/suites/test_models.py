"""Model presets are built through transformers with the dtype keyword the installed version understands."""

import importlib

import pytest
import torch

from bench_lib.suites import models, quant


def live_transformers():
    """The transformers module an ``import transformers`` gives now (in-process pytester runs of other tests
    can leave sys.modules holding another module object than one imported at collection)."""
    return importlib.import_module("transformers")


class FakeAuto:
    """AutoModelForCausalLM of transformers < 4.56: ``dtype=`` is no keyword of from_config/from_pretrained
    there (it reaches the model's __init__: TypeError)."""

    calls = []

    @classmethod
    def _check(cls, kwargs):
        if "dtype" in kwargs:
            raise TypeError("LlamaForCausalLM.__init__() got an unexpected keyword argument 'dtype'")
        cls.calls.append(kwargs)
        return torch.nn.Linear(1, 1)

    @classmethod
    def from_config(cls, config, **kwargs):
        return cls._check(kwargs)

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        return cls._check(kwargs)


@pytest.fixture
def transformers_4_46(monkeypatch):
    monkeypatch.setattr(live_transformers(), "__version__", "4.46.3")
    monkeypatch.setattr(live_transformers(), "AutoModelForCausalLM", FakeAuto)
    FakeAuto.calls = []
    return FakeAuto


@pytest.mark.parametrize("version, key", [("4.46.3", "torch_dtype"), ("4.55.4", "torch_dtype"),
                                          ("4.56.0.dev0", "dtype"), ("4.56.1", "dtype"), ("5.2.0", "dtype")])
def test_dtype_keyword_follows_the_version(monkeypatch, version, key):
    monkeypatch.setattr(live_transformers(), "__version__", version)
    assert models.dtype_kwargs(torch.bfloat16) == {key: torch.bfloat16}


def test_build_on_older_transformers_uses_torch_dtype(transformers_4_46):
    models.build(models.preset("llama-7m"), torch.device("cpu"), torch.bfloat16)
    assert transformers_4_46.calls[-1]["torch_dtype"] == torch.bfloat16


def test_load_model_on_older_transformers_uses_torch_dtype(transformers_4_46, monkeypatch, tmp_path):
    monkeypatch.setattr(quant, "checkpoint_dir", lambda *a, **k: tmp_path)
    monkeypatch.setattr(quant, "_avoid_unpackable_cpu_4bit", lambda model: None)
    quant.load_model(models.preset("llama-7m"), "fp16", torch.device("cpu"))
    assert transformers_4_46.calls[-1]["torch_dtype"] == torch.float16
    quant.load_model("some/checkpoint", "bf16", torch.device("cpu"))  # a real checkpoint: the same keyword
    assert transformers_4_46.calls[-1]["torch_dtype"] == torch.bfloat16


def test_build_with_installed_transformers_gives_the_dtype():
    model = models.build(models.preset("gpt2-tiny"), torch.device("cpu"), torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
