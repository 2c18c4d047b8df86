"""bench_lib.suites.token_clock: TTFT, decode and inter-token latency from the stamps of one call."""

import pytest
import torch

from bench_lib.suites import token_clock

CPU = torch.device("cpu")


class FakeClock:
    """Returns the scripted readings in order; fails loudly when asked for more."""

    def __init__(self, readings):
        self.readings = list(readings)

    def __call__(self):
        return self.readings.pop(0)


def fake_generate(n_tokens):
    """Calls the logits processors once per token, as transformers' greedy loop does."""

    def generate(processors):
        ids, scores = torch.zeros((1, 1), dtype=torch.long), torch.zeros((1, 4))
        for _ in range(n_tokens):
            for p in processors:
                scores = p(ids, scores)
        return "out"

    return generate


def test_ttft_and_decode_come_from_the_same_call():
    # call 1: t0 = 10, tokens at 10.5, 10.6, 10.8 -> ttft 0.5, decode 0.3
    # call 2: t0 = 20, tokens at 20.3, 20.4, 20.5 -> ttft 0.3, decode 0.2
    clock = FakeClock([10.0, 10.5, 10.6, 10.8, 20.0, 20.3, 20.4, 20.5])
    traces = []
    run = token_clock.traced(fake_generate(3), CPU, traces, clock)
    assert run() == "out" and run() == "out"
    assert traces == [(10.0, [10.5, 10.6, 10.8]), (20.0, [20.3, 20.4, 20.5])]
    got = token_clock.summarize(traces, batch=2, new_tokens=3)
    assert got["ttft_s"] == pytest.approx(0.4)  # median of 0.5 and 0.3
    assert got["decode_s"] == pytest.approx(0.25)  # median of 0.3 and 0.2, each read within its own call
    assert got["decode_tokens_per_s"] == pytest.approx(2 * 2 / 0.25)
    assert got["per_token_calls"] == 2
    # gaps 0.1, 0.2, 0.1, 0.1 pooled: p50 0.1, p90 between 0.1 and 0.2 by linear interpolation
    assert got["itl_p50_s"] == pytest.approx(0.1)
    assert got["itl_p90_s"] == pytest.approx(0.17)
    assert got["itl_p99_s"] == pytest.approx(0.197)


def test_a_call_with_the_wrong_token_count_is_refused():
    with pytest.raises(ValueError, match="stamped 2 tokens, not the fixed 3"):
        token_clock.summarize([(0.0, [0.1, 0.2])], batch=1, new_tokens=3)
    with pytest.raises(ValueError, match="no timed generate"):
        token_clock.summarize([], batch=1, new_tokens=3)


def test_every_stamp_synchronizes_the_device_first(monkeypatch):
    events = []
    monkeypatch.setattr(token_clock.devices, "synchronize", lambda device: events.append(("sync", device.type)))
    tc = token_clock.TokenClock(torch.device("cuda"), clock=lambda: events.append("clock") or 1.0)
    tc.start()
    tc(torch.zeros((1, 1)), torch.zeros((1, 2)))
    assert events == [("sync", "cuda"), "clock", ("sync", "cuda"), "clock"]


def test_clock_overhead_is_small_against_a_real_decode():
    """The hook's cost per token against a real tiny decode, both measured in this process: under 2%."""
    from bench_lib.suites import models

    model = models.build(models.preset("llama-tiny"), CPU, torch.float32, 0).eval()
    ids = torch.randint(0, 100, (1, 8))
    traces = []

    def generate(processors):
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=16,
                                  min_new_tokens=16, do_sample=False, logits_processor=processors, pad_token_id=0)

    run = token_clock.traced(generate, CPU, traces)
    for _ in range(3):
        run()
    decode_s = token_clock.summarize(traces, 1, 16)["decode_s"]
    per_call = token_clock.clock_overhead_s(CPU)
    assert per_call * 16 / decode_s < 0.02
