"""What ``effbench run`` checks before its first case: the output paths, and a journal to resume.

:func:`prepare` runs them all and returns the locked journal; :func:`case_timeout_s` is the ``--case-timeout``
argument type of the CLI and the pytest plugin. Every check raises :class:`RunRefused` with a message that says what to do; the CLI prints it and exits 2.
Nothing here writes a case: a refused run leaves every file it found as it was.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench_lib.harness import journal, profiles

# files effbench keeps beside a run file RUN.json; none of them may be the run file itself
SIDECAR_SUFFIXES = (".jsonl", ".running", ".log", ".tmp")


# beyond this a per-case limit is no limit (and setitimer overflows); a week is longer than any case
MAX_CASE_TIMEOUT_S = 7 * 24 * 3600


def case_timeout_s(text: str) -> float:
    """``--case-timeout`` as seconds: a finite number above zero (argparse type; nan cut every case, inf
    overflowed the timer, and 0 or less silently disabled the limit)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want seconds, e.g. 300, not {text!r}") from None
    if not math.isfinite(value) or value <= 0 or value > MAX_CASE_TIMEOUT_S:
        raise argparse.ArgumentTypeError(f"want seconds above 0 and at most {MAX_CASE_TIMEOUT_S} (a week), not {text!r}; "
                                         "leave it out for the profile's limit")
    return value


class RunRefused(Exception):
    """``effbench run`` cannot start as asked; the message says why and what to do instead."""


def run_file(path: str | os.PathLike, flag: str) -> tuple[Path, str | None]:
    """The run file a ``--output``/``--resume`` argument means, and a note when it was mapped.

    ``x.jsonl`` (the journal) means its run file ``x.json``; another sidecar (``x.log``) is refused, since the
    run file would be written over it.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        return path.with_suffix(".json"), f"{flag} {path} is the journal; using its run file {path.with_suffix('.json')}"
    if path.suffix in SIDECAR_SUFFIXES:
        raise RunRefused(f"{flag} {path}: a {path.suffix} file is one effbench keeps beside a run; give the run "
                         f"file instead, e.g. {path.with_suffix('.json')}")
    return path, None


def check_output(output: Path, resume: bool) -> None:
    """Refuse an output that cannot be written, or whose writing would destroy a run already there."""
    jpath = journal.journal_path(output)
    for p in (output, jpath, output.with_suffix(".log")):
        if p.is_dir():
            raise RunRefused(f"{p} is a folder; give a run file path such as {p / 'run.json'}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunRefused(f"cannot create the folder {output.parent}: {exc.strerror or exc} "
                         "(is a part of the path a file, or the disk read-only?)") from None
    if resume:
        return
    if journal.Journal(jpath).exists():
        raise RunRefused(f"{jpath} exists; continue it with --resume {output}, or choose another --output")
    if output.exists():
        raise RunRefused(f"{output} exists and has no journal beside it: it is a finished run, which this run "
                         "would replace. Choose another --output, or move it away first")


def lock(output: Path) -> journal.Journal:
    """The run's journal, locked for this process (created empty if absent): proves the folder is writable."""
    j = journal.Journal(journal.journal_path(output))
    try:
        j.lock()
    except journal.JournalLocked as exc:
        raise RunRefused(str(exc)) from None
    except OSError as exc:
        raise RunRefused(f"cannot write {j.path}: {exc.strerror or exc}; choose an --output on a writable disk") from None
    try:  # the log is opened by the supervisor in the same folder; fail here, not after the first case
        with open(output.with_suffix(".log"), "a"):
            pass
    except OSError as exc:
        raise RunRefused(f"cannot write {output.with_suffix('.log')}: {exc.strerror or exc}") from None
    return j


def read_header(jpath: Path, output: Path) -> dict[str, Any]:
    """The header of a journal to resume, or :class:`RunRefused` saying what is wrong with the file."""
    fresh = f"start a new run instead (--output {output}, after moving {jpath} away)"
    try:
        text = jpath.read_text(encoding="utf-8")
    except FileNotFoundError:
        ranks = sorted(output.parent.glob(f"{output.stem}.rank*.jsonl"))
        if ranks:  # a sharded sweep's journals (bench_lib/harness/shard.py): its resume runs under torchrun
            raise RunRefused(f"--resume {output}: no journal {jpath}, but a sharded sweep's {', '.join(p.name for p in ranks)}: "
                             f"resume it under the same torchrun command (torchrun --nproc-per-node={len(ranks)} -m bench_lib "
                             f"run --resume {output}), which picks up every rank's journal") from None
        raise RunRefused(f"--resume {output}: no journal {jpath} beside it") from None
    except UnicodeDecodeError:
        raise RunRefused(f"--resume: {jpath} is not a text journal (binary bytes); {fresh}") from None
    except OSError as exc:
        raise RunRefused(f"--resume: cannot read {jpath}: {exc.strerror or exc}") from None
    if "\0" in text:
        raise RunRefused(f"--resume: {jpath} holds binary bytes, not journal lines; {fresh}")
    if not text.strip():
        raise RunRefused(f"--resume: {jpath} is empty (the run stopped before it wrote anything); {fresh}")
    try:
        header, _, _ = journal.parse(text)
    except ValueError as exc:
        raise RunRefused(f"--resume: {jpath} is damaged ({exc}); {fresh}") from None
    if header is None:
        raise RunRefused(f"--resume: {jpath} has no header line, so it is not an effbench journal; {fresh}")
    if header.get("profile") not in profiles.PROFILE_CHOICES:
        raise RunRefused(f"--resume: the header of {jpath} has no valid profile ({header.get('profile')!r}, want one "
                         f"of {', '.join(profiles.PROFILE_CHOICES)}); {fresh}")
    if header.get("device") not in ("cpu", "cuda"):
        raise RunRefused(f"--resume: the header of {jpath} has no valid device ({header.get('device')!r}); {fresh}")
    return header


def check_same_machine(header: dict[str, Any], jpath: Path, allow_different: bool) -> str | None:
    """Refuse to file this machine's cases under the journal's machine; with ``allow_different`` warn instead.

    Returns a warning to print, or None. A header without a machine record cannot be checked and passes.
    """
    from bench_lib.harness import env

    recorded = ((header.get("machine_info") or {}).get("effbench") or {}) if isinstance(header.get("machine_info"), dict) else {}
    then = recorded.get("machine_slug") if isinstance(recorded, dict) else None
    if not then:
        return None
    gpu = env.gpu_info() if header.get("device") == "cuda" else None
    here = env.machine_slug(env.cpu_info(), gpu)
    if here == then:
        return None
    message = f"{jpath} was started on {then}; this machine is {here}"
    if allow_different:
        return f"effbench run: {message}; continuing, as --allow-different-machine asks (cases keep that header)"
    raise RunRefused(f"--resume: {message}. Its cases would be filed under the other machine: resume it there, or "
                     "pass --allow-different-machine if the two really are the same hardware")


def default_output(results_dir: Path, device: str, profile: str) -> Path:
    from bench_lib.harness import env

    gpu = env.gpu_info() if device == "cuda" else None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return results_dir / env.machine_slug(env.cpu_info(), gpu) / f"{stamp}-{profile}.json"


def prepare(args) -> tuple[Path, str, str, journal.Journal]:
    """Every check before the first case: (run file, profile, device, the journal, locked), or RunRefused."""
    from bench_lib.harness import device as devices
    from bench_lib.harness import runner

    if args.resume:
        output, note = run_file(args.resume, "--resume")
        if note:
            print(f"effbench run: {note}", file=sys.stderr)
        jpath = journal.journal_path(output)
        if not jpath.is_file():
            raise RunRefused(f"--resume {output}: no journal {jpath} beside it")
        check_output(output, resume=True)
        header = read_header(jpath, output)
        warning = check_same_machine(header, jpath, getattr(args, "allow_different_machine", False))
        if warning:
            print(warning, file=sys.stderr)
        locked = lock(output)
        note = journal.repair_tail(jpath)
        if note:
            print(f"effbench run: {note}; the next record starts on a fresh line", file=sys.stderr)
        stopped = locked.settle_running(runner.now())  # under the lock: nobody is running it
        if stopped:
            print(f"effbench run: {stopped['suite']}/{stopped['id']}: {stopped['reason']}", file=sys.stderr)
        return output, header["profile"], header["device"], locked
    try:
        device = devices.resolve(args.device).type
    except (ValueError, RuntimeError) as exc:
        raise RunRefused(str(exc)) from None
    if args.output:
        output, note = run_file(args.output, "--output")
        if note:
            print(f"effbench run: {note}", file=sys.stderr)
    else:
        output = default_output(Path(args.results_dir), device, args.profile)
    check_output(output, resume=False)
    return output, args.profile, device, lock(output)
