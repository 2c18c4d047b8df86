"""compare on bad values and hostile strings (issue 18): invalid values are exit 2, never a verdict, and its
Markdown (PR comments, job summaries) carries no markup that came from a file."""

import json
import re

import pytest
from runfactory import synthetic_run, write

from bench_lib import cli
from bench_lib.gate import compare_render


def compare(capsys, *args):
    rc = cli.main(["compare", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _both(run: dict, case: str, fn) -> dict:
    """Apply ``fn`` to the case record and to its pytest-benchmark entry (the run file holds both)."""
    for rec in run["effbench"]["cases"]:
        if f"{rec['suite']}/{rec['id']}" == case:
            fn(rec, "samples_s", rec)
    for entry in run["benchmarks"]:
        if f"{entry['extra_info']['suite']}/{entry['extra_info']['id']}" == case:
            fn(entry["stats"], "data", entry["extra_info"])
    return run


def _negate_times(stats, key, _):
    stats[key] = [-x for x in stats[key]]
    for k in ("median", "mean", "min", "max"):
        if k in stats:
            stats[k] = -stats[k]


def _set_memory(value):
    def fn(_, __, extra):
        extra.setdefault("memory", {})["torch_peak_allocated_bytes"] = value
    return fn


@pytest.mark.parametrize("mutate, what", [
    (lambda r: _both(r, "synthetic/case-2", _negate_times), "samples_s"),  # was "Improvements -200%", exit 0
    (lambda r: _both(r, "synthetic/case-2", lambda s, k, _: s.__setitem__(k, [float("nan")] * len(s[k]))),
     "samples_s"),  # NaN samples were inconclusive, as if the machine were noisy
    (lambda r: _both(r, "synthetic/case-2", lambda s, k, _: s.__setitem__(k, [float("inf")] * len(s[k]))),
     "samples_s"),
    (lambda r: _both(r, "synthetic/case-2", lambda s, k, _: s.__setitem__(k, ["fast"] * len(s[k]))),
     "samples_s"),  # ValueError traceback, exit 1
    (lambda r: _both(r, "synthetic/case-2", _set_memory(-2**30)), "torch_peak_allocated_bytes"),
    (lambda r: _both(r, "synthetic/case-2", _set_memory("lots")), "torch_peak_allocated_bytes"),
    (lambda r: _both(r, "synthetic/case-2", lambda s, k, x: x.__setitem__("outcome", {"ok": 1}))
     or [c.__setitem__("outcome", {"ok": 1}) for c in r["effbench"]["cases"] if c["id"] == "case-2"], "outcome"),
])
def test_invalid_values_in_the_candidate_are_exit_2_and_named(tmp_path, capsys, mutate, what):
    base = write(tmp_path, "base.json", synthetic_run(1))
    cand = write(tmp_path, "cand.json", mutate(synthetic_run(2)))
    rc, out, err = compare(capsys, base, cand)
    assert rc == 2, (out, err)
    assert "invalid value" in err and "case-2" in err
    assert what in err or (what == "samples_s" and "stats.data" in err)  # the pytest-benchmark copy is read first
    assert out == ""  # no verdict from a broken file
    rc, _, err = compare(capsys, cand, base)  # the same in the baseline
    assert rc == 2 and "invalid value" in err


def test_negative_times_are_never_an_improvement(tmp_path, capsys):
    negative = synthetic_run(2)
    for name in [f"synthetic/case-{k}" for k in range(6)]:
        _both(negative, name, _negate_times)
    rc, out, _ = compare(capsys, write(tmp_path, "b.json", synthetic_run(1)), write(tmp_path, "c.json", negative))
    assert rc == 2 and "Improvements" not in out


def test_deeply_nested_json_is_bad_input_not_a_recursion_error(tmp_path, capsys):
    # a RecursionError traceback exits 1, which nightly CI reads as a regression
    base = write(tmp_path, "base.json", synthetic_run(1))
    text = json.dumps(synthetic_run(2)).replace('"case": {"n": 1}', '"case": {"x": ' + "[" * 200_000 + "]" * 200_000 + "}", 1)
    assert "[[[[" in text
    for name in ("deep.json", "deep.jsonl"):
        (tmp_path / name).write_text(text if name.endswith(".json") else
                                     '{"type": "header", "profile": "full"}\n' + text.replace("\n", " ") + "\n")
        rc, _, err = compare(capsys, base, tmp_path / name)
        assert rc == 2, err
        assert "nested too deeply" in err


def test_unwritable_output_is_exit_2(tmp_path, capsys):
    base = write(tmp_path, "base.json", synthetic_run(1))
    for target in (tmp_path / "missing-folder" / "out.md", tmp_path):  # no parent; a directory
        rc, _, err = compare(capsys, base, base, "-o", target)
        assert rc == 2, err
        assert "cannot write --output" in err


HOSTILE = '<img src=https://evil.example/x.png><h1>ALL GREEN</h1>[click](javascript:alert(1))![i](https://e/x.png)'


def _raw_markup(markdown: str) -> list[str]:
    """Markup that would render: an HTML tag, a link or image, outside code spans and escapes."""
    no_escapes = re.sub(r"\\.", "", markdown)
    no_code = re.sub(r"(`+)(.+?)\1", "", no_escapes)
    return re.findall(r"<[a-zA-Z/!][^>]*>|!?\[[^\]]*\]\([^)]*\)", no_code)


def test_markdown_escapes_html_links_and_backticks_from_files(tmp_path, capsys):
    base = synthetic_run(1)
    cand = synthetic_run(1)
    for run in (base, cand):  # hostile ids in both, so the case is compared and listed everywhere
        for rec in run["effbench"]["cases"]:
            if rec["id"] == "case-0":
                rec["id"] = "case`<h1>id</h1>`0 [x](javascript:y)"
    for rec in cand["effbench"]["cases"][1:4]:
        rec["outcome"], rec["reason"] = "error", HOSTILE
    cand["effbench"]["cases"][4]["id"] = "new` <b>bold</b> `"
    rc, out, _ = compare(capsys, write(tmp_path, "b.json", base), write(tmp_path, "c.json", cand), "--allow-unstable")
    assert rc == 1  # the errors are real regressions
    assert _raw_markup(out) == []
    assert "`` synthetic/new` <b>bold</b> ` ``" in out  # a code span its own backticks cannot close
    assert "&lt;img src=https://evil.example/x.png>" in out  # shown as text, not an image


@pytest.mark.parametrize("text", ["a`b", "``x``", "`lead", "trail`", "plain", "x|y", "<h1>t</h1>"])
def test_code_span_holds_its_text_whatever_the_backticks(text):
    span = compare_render._code(text)
    fence = re.match(r"`+", span).group()
    inner = span[len(fence):-len(fence)]
    assert span.endswith(fence) and fence not in inner.replace("``" * len(fence), "")
    assert inner.strip(" ") == text.replace("|", "\\|")


@pytest.mark.parametrize("value", ["nan", "-1", "inf"])
def test_a_noise_multiple_that_is_no_finite_number_is_a_usage_error(tmp_path, capsys, value):
    base = write(tmp_path, "base.json", synthetic_run(1))
    rc, _, err = compare(capsys, base, base, f"--noise-multiple={value}")
    assert rc == 2 and "--noise-multiple" in err
