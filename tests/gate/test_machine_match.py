"""Package versions in compare: a changed or newly installed library shows in the Markdown report."""

import json

from runfactory import environment, synthetic_run, write

from bench_lib import cli


def test_package_changes_and_installs_show_in_the_markdown(tmp_path, capsys):
    base_env = environment("cuda", "NVIDIA H200")
    base_env["packages"] = {"torch": "2.10.0", "transformers": "5.23.0", "flash-attn": None, "triton": "3.6.0"}
    cand_env = json.loads(json.dumps(base_env))
    cand_env["packages"].update({"transformers": "5.24.0", "flash-attn": "2.8.3.post2"})
    del cand_env["packages"]["triton"]  # an older record without the key: unknown, not a difference
    base = write(tmp_path, "base.json", synthetic_run(1, env=base_env))
    cand = write(tmp_path, "cand.json", synthetic_run(1, env=cand_env))
    rc = cli.main(["compare", base, cand, "--format", "md"])
    out = capsys.readouterr().out
    assert rc == 0
    section = out.split("Package versions (baseline -> candidate):")[1].split("\n\n")[1]
    assert "- package transformers: 5.23.0 -> 5.24.0" in section
    assert "- package flash-attn: not installed -> 2.8.3.post2" in section  # was: left out (None on one side)
    assert "triton" not in out and "package torch" not in out
    assert "Machine and software differences" not in out  # same machine: only the packages differ
