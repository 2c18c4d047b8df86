import json

import pytest

from bench_lib import SCHEMA_VERSION
from bench_lib.report import load
from tests.report.conftest import load_doc


def test_run_file_loads_with_every_case(data_dir):
    runs, problems = load.load([data_dir / "cpu-a.json"])
    assert problems == []
    assert list(runs["run"]) == ["cpu-a"]
    row = runs.iloc[0]
    assert row["source"] == "json" and row["schema_version"] == SCHEMA_VERSION
    assert row["environment"]["machine_slug"] == "cpu-epyc-2c"
    # every outcome is a case record, not only the measured ones in `benchmarks`
    assert len(row["cases"]) == 83
    assert {c["outcome"] for c in row["cases"]} == {"ok", "unsupported", "oom", "crashed", "timeout"}


def test_truncated_file_is_reported_by_name_and_others_still_load(data_dir):
    runs, problems = load.load([data_dir / "truncated.json", data_dir / "cpu-a.json"])
    assert list(runs["run"]) == ["cpu-a"]
    assert len(problems) == 1
    text = str(problems[0])
    assert "truncated.json" in text and "skipped" in text and "not valid JSON" in text


def test_interrupted_journal_loads_its_finished_lines(data_dir):
    runs, problems = load.load([data_dir / "interrupted.jsonl"])
    assert runs.iloc[0]["source"] == "journal"
    assert len(runs.iloc[0]["cases"]) == 11  # the twelfth line was cut mid-write
    assert any("cut off" in str(p) for p in problems)
    assert runs.iloc[0]["environment"]["machine_slug"] == "cpu-epyc-2c"


def test_broken_json_falls_back_to_its_journal(tmp_path, data_dir):
    (tmp_path / "run.json").write_text('{"machine_info": {')
    (tmp_path / "run.jsonl").write_text((data_dir / "interrupted.jsonl").read_text())
    runs, problems = load.load([tmp_path])
    assert list(runs["source"]) == ["journal"]
    assert any("falling back to run.jsonl" in str(p) for p in problems)


def test_folder_prefers_json_over_its_journal(tmp_path, data_dir):
    (tmp_path / "run.json").write_text((data_dir / "cpu-a.json").read_text())
    (tmp_path / "run.jsonl").write_text((data_dir / "interrupted.jsonl").read_text())
    runs, problems = load.load([tmp_path])
    assert list(runs["source"]) == ["json"] and problems == []


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("effbench"), None),  # becomes version 0 and is upgraded, not an error
    (lambda d: d["effbench"].update(cases={}), "'effbench.cases' must be a list"),
    (lambda d: d["effbench"].update(schema_version=SCHEMA_VERSION + 1), "newer than this effbench reads"),
    (lambda d: [d.pop("effbench"), d.pop("benchmarks")], "not a run file"),
])
def test_schema_errors_name_file_and_fault(tmp_path, mutate, message):
    doc = load_doc("cpu-a.json")
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    runs, problems = load.load([path])
    if message is None:
        assert len(runs) == 1
        return
    assert runs.empty
    assert "bad.json" in str(problems[0]) and message in str(problems[0])


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["effbench"]["cases"][3].pop("outcome"), "outcome None is not one of"),
    (lambda d: d["effbench"]["cases"][3].update(metrics=[1]), "'metrics' [1] is not an object"),
])
def test_a_bad_case_record_skips_that_case_not_the_file(tmp_path, mutate, message):
    doc = load_doc("cpu-a.json")
    skipped = doc["effbench"]["cases"][3]
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    runs, problems = load.load([path])
    assert len(runs) == 1 and len(runs["cases"][0]) == len(doc["effbench"]["cases"]) - 1
    note = next(str(p) for p in problems if "skipped" in str(p))
    assert "bad.json" in note and f"{skipped['suite']}/{skipped['id']}" in note and message in note


def test_version0_plain_pytest_benchmark_is_upgraded(data_dir):
    doc = load.read_json(data_dir / "v0-plain-pytest-benchmark.json")
    assert load.schema_version(doc) == 0
    upgraded = load.upgrade(doc)
    load.validate(upgraded)
    assert load.schema_version(upgraded) == SCHEMA_VERSION
    cases = upgraded["effbench"]["cases"]
    assert len(cases) == len(doc["benchmarks"]) == 28
    first, bench = cases[0], doc["benchmarks"][0]
    assert first["suite"] == "attention" and first["outcome"] == "ok"
    assert first["metrics"]["time_s"] == bench["stats"]["median"]
    assert first["samples_s"] == bench["stats"]["data"]
    assert "node" not in upgraded["machine_info"]["effbench"]  # no hostname carried into the record


def test_upgrade_chain_runs_in_order_and_checks_each_step():
    seen = []

    def step(n):
        def up(doc):
            seen.append(n)
            return {**doc, "effbench": {**doc.get("effbench", {}), "schema_version": n + 1, "cases": []}}
        return up

    doc = {"benchmarks": [], "machine_info": {}}
    out = load.upgrade(doc, {0: step(0)})
    assert seen == [0] and out["effbench"]["schema_version"] == SCHEMA_VERSION
    with pytest.raises(load.SchemaError, match="no upgrade from schema_version 0"):
        load.upgrade(doc, {})
    with pytest.raises(load.SchemaError, match="produced version 0"):
        load.upgrade(doc, {0: lambda d: d})


def test_missing_path_and_duplicate_stems(tmp_path, data_dir):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "run.json").write_text((data_dir / "cpu-a.json").read_text())
    runs, problems = load.load([tmp_path, tmp_path / "nope.json"])
    assert sorted(runs["run"]) == ["a/run", "b/run"]
    assert [str(p) for p in problems] == [f"{tmp_path / 'nope.json'}: no such file or folder"]


def test_non_object_json_is_a_clear_error(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    runs, problems = load.load([tmp_path / "list.json"])
    assert runs.empty and str(problems[0]).split("/")[-1] == "list.json: skipped: a run file must hold a JSON object"


def test_contract_problems_are_listed_but_the_run_loads(tmp_path):
    doc = load_doc("cpu-a.json")
    oom = next(c for c in doc["effbench"]["cases"] if c["outcome"] == "oom")
    oom["reason"] = None
    del doc["machine_info"]["effbench"]["git"]
    (tmp_path / "lax.json").write_text(json.dumps(doc))
    runs, problems = load.load([tmp_path / "lax.json"])
    assert len(runs) == 1
    text = "\n".join(map(str, problems))
    assert "lax.json: does not follow the results contract" in text
    assert f"({oom['id']}): outcome oom without a reason" in text and "missing 'git'" in text


def test_real_and_synthetic_files_follow_the_contract(data_dir):
    runs, problems = load.load([data_dir / n for n in ("cpu-a.json", "gpu-h200.json", "smoke-cal-attn.json",
                                                       "smoke-precision.json", "smoke-finetune.json",
                                                       "real-smoke-calibration.json", "v0-plain-pytest-benchmark.json")])
    assert len(runs) == 7 and problems == []
