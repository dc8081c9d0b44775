# Run: python -m pytest tests/test_harness_runtime.py -q
from __future__ import annotations

import pytest
import torch

from autoresearch_nb.harness import constants as C
from autoresearch_nb.harness import runtime


def test_seed_and_budget_come_from_the_environment(monkeypatch):
    monkeypatch.delenv(C.ENV_SEED, raising=False)
    monkeypatch.delenv(C.ENV_TIME_BUDGET, raising=False)
    monkeypatch.delenv(C.ENV_DEVICE_CLASS, raising=False)
    assert runtime.seed() == 42
    assert runtime.time_budget(torch.device("cpu")) == C.TIME_BUDGET["cpu"]
    monkeypatch.setenv(C.ENV_SEED, "7")
    monkeypatch.setenv(C.ENV_TIME_BUDGET, "2.5")
    assert runtime.seed() == 7 and runtime.time_budget() == 2.5
    monkeypatch.setenv(C.ENV_TIME_BUDGET, "-1")
    with pytest.raises(ValueError):
        runtime.time_budget()


def test_device_class_can_be_forced_for_tests(monkeypatch):
    monkeypatch.setenv(C.ENV_DEVICE_CLASS, "cuda")
    assert runtime.device_class(torch.device("cpu")) == "cuda"
    assert runtime.seq_len(torch.device("cpu")) == C.SEQ_LEN["cuda"]
    monkeypatch.setenv(C.ENV_DEVICE_CLASS, "tpu")
    with pytest.raises(ValueError):
        runtime.device_class()


def test_dataset_dir_follows_overrides(monkeypatch, tmp_path):
    monkeypatch.delenv(C.ENV_DATA, raising=False)
    monkeypatch.delenv(C.ENV_DATASET, raising=False)
    monkeypatch.setenv(C.ENV_CACHE, str(tmp_path))
    assert runtime.dataset_dir() == tmp_path / "stdlib"
    monkeypatch.setenv(C.ENV_DATA, str(tmp_path / "mine"))
    assert runtime.dataset_dir() == tmp_path / "mine"


def test_cpu_peak_is_theoretical_and_never_measured(monkeypatch):
    monkeypatch.delenv(C.ENV_PEAK_FLOPS, raising=False)
    monkeypatch.setattr(runtime, "measure_matmul_flops", lambda *a: pytest.fail("measured"))
    assert runtime.cpu_peak_flops(torch.float32, threads=2, ghz=2.5, flags={"avx2", "fma"}) == 2 * 2.5e9 * 32
    assert runtime.cpu_peak_flops(torch.bfloat16, threads=2, ghz=2.5, flags={"avx2", "fma"}) == 2 * 2.5e9 * 32
    assert runtime.cpu_peak_flops(torch.bfloat16, threads=1, ghz=2.0, flags={"avx512f", "amx_bf16"}) == 2e9 * 1024
    assert runtime.peak_flops(torch.device("cpu")) > 1e9


def test_peak_flops_override(monkeypatch):
    monkeypatch.setenv(C.ENV_PEAK_FLOPS, "1e12")
    assert runtime.peak_flops(torch.device("cpu")) == 1e12


@pytest.mark.parametrize("cls", ["cpu", "cuda"])
def test_on_cuda_a_prepared_bigger_corpus_is_the_default_and_the_loop_agrees(monkeypatch, tmp_path, cls):
    from autoresearch_nb.sandbox import dataset_cache

    for name in (C.ENV_DATA, C.ENV_DATASET, C.ENV_DEVICE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(C.ENV_CACHE, str(tmp_path))
    monkeypatch.setenv(C.ENV_DEVICE_CLASS, cls)
    assert runtime.dataset_dir() == tmp_path / "stdlib" == dataset_cache()
    (tmp_path / "tinystories").mkdir()
    (tmp_path / "tinystories" / "meta.json").write_text("{}")
    expected = tmp_path / ("tinystories" if cls == "cuda" else "stdlib")
    assert runtime.dataset_dir() == expected == dataset_cache()  # the sandbox lets runs read what they use
    (tmp_path / "climbmix").mkdir()
    (tmp_path / "climbmix" / "meta.json").write_text("{}")
    assert runtime.default_dataset() == ("climbmix" if cls == "cuda" else "stdlib")
    monkeypatch.setenv(C.ENV_DATASET, "stdlib")  # a named dataset always wins
    assert runtime.dataset_dir() == tmp_path / "stdlib" == dataset_cache()
