"""``effbench report RUN... -o DIR [--baseline ID]``: run files, journals or folders -> a report folder.

Writes ``DIR/index.html`` (self-contained), ``DIR/report.md``, ``DIR/figures/*.png`` and ``DIR/cases.csv``
(the tidy table, one row per run x case). Files that cannot be read are named on stderr and in the report,
and the rest still render. Exit status: 0 written, 1 nothing readable, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from bench_lib.harness import hardware
from bench_lib.report import html, load, markdown, sections, tidy


@dataclass(frozen=True)
class Written:
    index: Path
    markdown: Path
    cases_csv: Path
    figures: list[Path]
    problems: list[load.Problem]


def render(paths, outdir: str | Path, baseline: str | None = None, prices: str | None = None) -> Written:
    """The whole pipeline: load -> tidy -> aggregate/claims/figures -> HTML, Markdown, CSV.

    Raises ``ValueError`` when no file could be read, the baseline is unknown or the price file is bad.
    ``prices``: a GPU price file (see :mod:`bench_lib.harness.hardware`; default: ``$EFFBENCH_PRICES``).
    ``effbench run`` calls this for its own run file.
    """
    outdir = Path(outdir)
    runs, problems = load.load(paths)
    if runs.empty:
        detail = "; ".join(str(p) for p in problems) or "no .json or .jsonl files found"
        raise ValueError(f"no readable run files ({detail})")
    cases = tidy.tidy(runs)
    series = tidy.series(runs)
    sections.resolve_baselines(cases, baseline)  # fail on a bad --baseline or price file before writing anything
    hardware.catalog(prices)
    figures_dir = outdir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    for stale in figures_dir.glob("*.png"):  # a re-render must not leave figures of an earlier report
        stale.unlink()
    doc = sections.build(runs, cases, series, problems, outdir, baseline, prices)
    cases_csv = outdir / "cases.csv"
    tidy.to_csv(cases, cases_csv)
    return Written(html.write(doc, outdir), markdown.write(doc, outdir), cases_csv,
                   sorted(figures_dir.glob("*.png")), problems)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run JSON files, journals (RUN.jsonl) or folders holding them")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="report folder to write")
    parser.add_argument("--baseline", metavar="ID", default=None,
                        help="impl, precision or method that ratios are taken against "
                             "(defaults: eager, fp32, full)")
    parser.add_argument("--prices", metavar="FILE", default=None,
                        help="GPU rental prices overriding the catalog's (JSON; default: $EFFBENCH_PRICES)")


def main(args: argparse.Namespace) -> int:
    try:
        written = render(args.runs, args.output, args.baseline, args.prices)
    except ValueError as exc:
        print(f"effbench report: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, hardware.CatalogError) or "--baseline" in str(exc) else 1
    except OSError as exc:  # -o is a file, on a read-only mount, under a missing root: a bad argument
        print(f"effbench report: cannot write the report to {args.output}: {exc.strerror or exc} "
              "(choose a folder you can write)", file=sys.stderr)
        return 2
    for problem in written.problems:
        print(f"effbench report: {problem}", file=sys.stderr)
    print(f"wrote {written.index} ({len(written.figures)} figures), {written.markdown}, {written.cases_csv}")
    return 0


if __name__ == "__main__":
    cli = argparse.ArgumentParser(prog="effbench report", description=__doc__.splitlines()[0])
    add_arguments(cli)
    sys.exit(main(cli.parse_args()))
