"""Bad values in run files (issue 18): each is flagged with its case named and skipped, the rest renders, and a
good run beside a bad one keeps its report. Before, each of these was a traceback (or a report that never
finished), and the good run's report was lost with it."""

import csv
import json

import pytest
from matplotlib.figure import Figure

from bench_lib import cli
from bench_lib.report import case_values, render
from tests.report.conftest import DATA, load_doc


def _ok(doc: dict, suite: str, n: int) -> dict:
    return [c for c in doc["effbench"]["cases"] if c["suite"] == suite and c["outcome"] == "ok"][n]


def _bad_finetune() -> tuple[dict, dict[str, str]]:
    """smoke-finetune.json with one bad value per case; -> (doc, case id -> what the note must name)."""
    doc = load_doc("smoke-finetune.json")
    named = {}

    def bad(n, where, key, value, note):
        rec = _ok(doc, "finetune", n)
        rec[where] = value if key is None else {**(rec[where] or {}), key: value}
        named[rec["id"]] = note

    bad(0, "metrics", "step_s", "fast", "metrics.step_s = 'fast' is not a number")
    bad(1, "metrics", "time_s", float("nan"), "metrics.time_s = nan is not a finite number")
    bad(2, "metrics", "peak_bytes", float("inf"), "metrics.peak_bytes = inf")
    bad(3, "metrics", "step_s", 10**400, "is not a finite number")
    bad(4, "metrics", None, None, None)  # null metrics: the case stays, without metrics
    bad(5, "case", "group", "bogus", "fine-tune group 'bogus'")
    for n in range(6, 11):  # negative peaks made the byte axis step by 1 byte over gigabytes: a hang
        bad(n, "metrics", "peak_bytes", -9e9, "metrics.peak_bytes = -9000000000.0 is negative")
    named.pop(_ok(doc, "finetune", 4)["id"])
    return doc, named


def _bad_attention() -> tuple[dict, dict[str, str]]:
    doc = load_doc("smoke-cal-attn.json")
    named = {}
    rec = _ok(doc, "attention", 0)
    rec["case"]["seq_len"] = "long"  # sorted beside integers: TypeError
    named[rec["id"]] = "parameter seq_len = 'long' is not a whole number"
    rec = _ok(doc, "attention", 1)
    rec["metrics"]["time_s"] = "x"
    named[rec["id"]] = "metrics.time_s = 'x'"
    rec = _ok(doc, "attention", 2)
    rec["outcome"] = ["ok"]
    named[rec["id"]] = "outcome ['ok'] is not one of"
    return doc, named


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-values")
    ft, ft_named = _bad_finetune()
    attn, attn_named = _bad_attention()
    (folder / "bad-ft.json").write_text(json.dumps(ft))
    (folder / "bad-attn.json").write_text(json.dumps(attn))
    (folder / "good.json").write_text(json.dumps(load_doc("smoke-precision.json")))
    out = folder / "report"
    return folder, out, {**ft_named, **attn_named}


def test_bad_values_are_named_and_skipped_and_the_good_run_keeps_its_report(rendered, capsys):
    folder, out, named = rendered
    rc = cli.main(["report", str(folder / "bad-ft.json"), str(folder / "bad-attn.json"), str(folder / "good.json"),
                   "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    for case_id, note in named.items():
        line = next((ln for ln in err.splitlines() if f"/{case_id}:" in ln), None)
        assert line is not None, f"{case_id} not named in:\n{err}"
        assert note in line
    with open(out / "cases.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    good = load_doc("smoke-precision.json")["effbench"]["cases"]
    assert {r["case_id"] for r in rows if r["run"] == "good"} == {c["id"] for c in good}
    skipped = {k for k, note in named.items() if "group" in note or "parameter" in note or "outcome" in note}
    for run, name in (("bad-ft", "smoke-finetune.json"), ("bad-attn", "smoke-cal-attn.json")):
        expected = {c["id"] for c in load_doc(name)["effbench"]["cases"]} - skipped
        assert {r["case_id"] for r in rows if r["run"] == run} == expected
    assert "bad value" in (out / "report.md").read_text()  # the reader of the report sees it too


def test_a_negative_byte_range_gets_a_few_ticks_not_one_per_byte():
    ax = Figure().subplots()
    ax.bar([0, 1], [-9e9, 2e6])
    render.bytes_axis(ax, "y", [-9e9, 2e6], "peak memory", log=False)
    ticks = ax.yaxis.get_major_locator().tick_values(-9e9, 2e6)
    assert len(ticks) < 30


@pytest.mark.parametrize("rec, kept, note", [
    ({"metrics": {"time_s": -1.0}}, False, "is negative"),
    ({"metrics": {"time_s": True}}, True, None),  # a flag is not a bad number
    ({"metrics": {"kl_vs_ref": -1e-9}}, True, None),  # a KL estimate may dip below 0 numerically
    ({"metrics": {"flop_formula": "matmul:2mnk"}}, True, None),  # text metrics stay
    ({"metrics": {"trainable_params": "many"}}, False, "is not a number"),
    ({"metrics": {"tflops": [1, 2]}}, False, "is not a single value"),
    ({"memory": {"cpu_peak_rss_bytes": -5}}, False, "is negative"),
    ({"memory": {"primary": "cpu_peak_rss_bytes"}}, True, None),
])
def test_each_value_rule(rec, kept, note):
    base = {"id": "x", "suite": "attention", "case": {}, "outcome": "ok", "reason": None}
    clean, notes = case_values.clean_case({**base, **rec})
    section = next(iter(rec))
    assert (next(iter(rec[section])) in clean[section]) is kept
    assert (note is None and notes == []) or (note is not None and note in notes[0] and "attention/x" in notes[0])


@pytest.mark.parametrize("change, note", [
    ({"id": 3}, "'id' 3"), ({"suite": ""}, "'suite' ''"), ({"outcome": "great"}, "outcome 'great'"),
    ({"case": None}, "'case' None"), ({"metrics": [1]}, "'metrics' [1]"),
    ({"case": {"batch": -1}}, "parameter batch = -1"), ({"case": {"rank": 2.5}}, "parameter rank = 2.5"),
    ({"case": {"impl": {"x": 1}}}, "parameter impl"), ({"case": {"other": float("nan")}}, "parameter other"),
    ({"suite": "finetune", "case": {}}, "fine-tune group None"),
])
def test_a_case_that_cannot_be_placed_is_skipped_with_its_reason(change, note):
    base = {"id": "x", "suite": "attention", "case": {}, "outcome": "ok", "reason": None}
    clean, notes = case_values.clean_case({**base, **change})
    assert clean is None and "skipped" in notes[0] and note in notes[0]


@pytest.mark.parametrize("target", ["a-file", "a-file/sub", "/proc/no-such/report"])
def test_an_unwritable_report_folder_is_exit_2_not_a_traceback(tmp_path, capsys, target):
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / target if not target.startswith("/") else target
    rc = cli.main(["report", str(DATA / "real-smoke-calibration.json"), "-o", str(out)])
    assert rc == 2
    assert "cannot write the report" in capsys.readouterr().err


@pytest.mark.parametrize("prices", ["[" * 100_000, '{"prices": {"NVIDIA H200": NaN}}',
                                    '{"prices": {"NVIDIA H200": Infinity}}', '{"prices": {"NVIDIA H200": 1' + "0" * 400 + "}"])
def test_a_bad_price_file_is_exit_2(tmp_path, capsys, prices):
    (tmp_path / "prices.json").write_text(prices)
    rc = cli.main(["report", str(DATA / "real-smoke-calibration.json"), "-o",
                   str(tmp_path / "r"), "--prices", str(tmp_path / "prices.json")])
    assert rc == 2
    assert "price file" in capsys.readouterr().err


def test_every_fine_tune_group_the_grid_makes_is_a_known_group():
    # the loader skips a fine-tune case of an unknown group: a group the grid makes must never be one
    from bench_lib.harness import profiles
    from bench_lib.report import case_values

    made = {c.params.get("group") for p in profiles.PROFILE_CHOICES for d in ("cpu", "cuda")
            for c in profiles.cases("finetune", p, d)}
    assert made and made <= set(case_values.FINETUNE_GROUPS), made
