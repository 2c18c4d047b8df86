"""bench_lib.suites.trained and the convergence pipeline's use of it: content-addressed, atomic, reused."""

from pathlib import Path

import pytest
import torch

from bench_lib.suites import convergence, trained
from bench_lib.suites import convergence_data as data

CPU = torch.device("cpu")
TINY = {"hidden": 32, "layers": 1, "heads": 2, "vocab": 384, "seq": 32, "pretrain_sentences": 1000,
        "pretrain_steps": 6, "pretrain_batch": 4, "finetune_steps": 4, "finetune_batch": 4}
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cache_root_is_the_env_var_else_a_user_cache_dir_outside_the_checkout(monkeypatch, tmp_path):
    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / "c"))
    assert trained.cache_root() == tmp_path / "c"
    monkeypatch.delenv("EFFBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert trained.cache_root() == tmp_path / "xdg" / "effbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    default = trained.cache_root()
    assert default == Path.home() / ".cache" / "effbench" and REPO not in default.parents


def test_key_is_the_content_address_of_the_fields():
    a = trained.key("pretrain", {"steps": 360, "seed": 0})
    assert a == trained.key("pretrain", {"seed": 0, "steps": 360})  # order does not matter
    assert a != trained.key("pretrain", {"steps": 361, "seed": 0}) != trained.key("finetune", {"steps": 360, "seed": 0})
    assert a.startswith("pretrain-") and len(a) == len("pretrain-") + 12


def test_a_failed_write_leaves_no_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path))

    def broken(folder):
        (folder / "half.safetensors").write_bytes(b"x")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="mid-write"):
        trained.store("e-1", broken, {})
    assert trained.entry("e-1") is None and list(tmp_path.iterdir()) == []
    path = trained.store("e-1", lambda f: (f / "w.safetensors").write_bytes(b"ok"), {"n": 1})
    assert trained.entry("e-1") == path and trained.meta(path) == {"format": trained.FORMAT_VERSION, "n": 1}


def test_unwritable_cache_says_what_to_do(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("EFFBENCH_CACHE", str(blocker / "sub"))
    with pytest.raises(RuntimeError, match="Set EFFBENCH_CACHE to a writable folder"):
        trained.store("e", lambda f: None, {})


def test_second_use_loads_from_disk_and_never_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path))
    cfg = convergence.Config(**TINY)
    convergence._CACHE.clear()
    first = convergence.pretrained(cfg, CPU)
    assert not first.reused and first.trained_here_s > 0 and (first.path / "model.safetensors").is_file()
    folder, info = convergence.finetuned(cfg, CPU, "full")
    assert not info["reused"] and info["trained_here_s"] > 0 and (folder / "model.safetensors").is_file()

    convergence._CACHE.clear()  # as a new process: only the disk is left

    def no_training(*args):
        raise AssertionError("trained again")

    monkeypatch.setattr(convergence, "_pretrain", no_training)
    monkeypatch.setattr(convergence.training, "train_step", no_training)
    again = convergence.pretrained(cfg, CPU)
    assert again.reused and again.trained_here_s == 0 and again.loss_curve == first.loss_curve
    assert all(torch.equal(again.state_dict[k], v) for k, v in first.state_dict.items())
    assert again.tokenizer.encode(data.prompt("France")).ids == first.tokenizer.encode(data.prompt("France")).ids
    folder2, info2 = convergence.finetuned(cfg, CPU, "full")
    assert folder2 == folder and info2["reused"] and info2["trained_here_s"] == 0
    assert info2["finetune_s"] == info["finetune_s"]  # the time it took when it was trained, kept
    # a different schedule is a different entry: it would train (and here must not)
    with pytest.raises(AssertionError, match="trained again"):
        convergence.finetuned(convergence.Config(**{**TINY, "finetune_steps": 5}), CPU, "full")
    convergence._CACHE.clear()
