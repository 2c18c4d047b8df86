import math

from bench_lib.report import fmt


def test_binary_bytes():
    assert fmt.binary_bytes(1536) == "1.5 KiB"
    assert fmt.binary_bytes(3 * 2**30) == "3 GiB"
    assert fmt.binary_bytes(512) == "512 B"
    assert fmt.binary_bytes(float("nan")) == "–"


def test_units_follow_the_metric_name():
    assert fmt.by_name("peak_bytes", 2**20) == "1 MiB"
    assert fmt.by_name("time_s", 0.00123) == "1.23 ms"
    assert fmt.by_name("decode_tokens_per_s", 1234.5) == "1,234"  # a rate, not seconds
    assert fmt.by_name("bandwidth_bytes_per_s", 2**30) == "1 GiB/s"
    assert fmt.by_name("trainable_frac", 0.0123) == "1.2%" and fmt.by_name("decode_frac_of_bandwidth", 0.05) == "5.0%"
    assert fmt.by_name("trainable_params", 65536) == "65,536"


def test_decimal_gb_and_ratio():
    assert fmt.decimal_gb(28e9) == "28.0 GB"
    assert fmt.ratio(0.5) == "0.50×" and fmt.ratio(None) == "–"
    assert fmt.seconds(2.5) == "2.5 s" and fmt.seconds(3e-7) == "300 ns" and fmt.seconds(0) == "0 s"
    assert fmt.number(math.inf) == "–" and fmt.number(True) == "True"
