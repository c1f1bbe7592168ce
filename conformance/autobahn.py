"""Autobahn TestSuite against daphne, run by kosoku; a verdict per section.

``make conformance`` runs all 517 cases (sections 1-7, 9, 10, 12, 13)::

    python -m conformance.autobahn [--subset ci] [--daphne .venv/bin/daphne]
                                   [--engine websockets|autobahn]

kosoku (https://pypi.org/project/kosoku/) drives the TestSuite's own case
files from a native runner; it is installed in a virtualenv of its own
(``conformance/.venv``), and daphne runs from the project's ``.venv``. daphne
serves :mod:`conformance.echo` with the message and frame limits raised to
16 MiB on the command line, for section 9 (the 1 MiB default stays), and
with the WebSocket engine ``--engine`` names (``make conformance
ENGINE=autobahn``; websockets by default).

Each case gets one verdict: its message verdict, unless its closing handshake
did worse. The run fails on any FAILED or UNIMPLEMENTED case (or one that
could not be run); NON-STRICT and INFORMATIONAL are allowed (the README says
which cases are and why).

Then the HTTP/1.1 framing and smuggling probes of :mod:`.http1` run against
the same server (``--no-http1`` skips them).

The ``ci`` subset (what ``make test`` runs, through
``tests/test_autobahn.py``): every case of sections 1-10, and cases 1-5 and
11 of every 12.x and 13.x group (72 of the 216 compression cases).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import http1

ROOT = Path(__file__).resolve().parent.parent

#: daphne's output during the last run.
LOG = ROOT / "conformance" / "results" / "daphne.log"

#: The verdicts, in the order the table shows them.
VERDICTS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")

#: Verdicts that fail the run.
FAILING = frozenset({"UNIMPLEMENTED", "FAILED"})

#: Section 9 sends messages of up to 16 MiB (in frames of up to 16 MiB).
LARGE_LIMIT = str(16 * 1024 * 1024)

#: Every section (there is no 8 or 11 in the TestSuite).
ALL_CASES = ("1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*")
COMPRESSION_CASES = ("12.*", "13.*")

#: The compression groups (12.1-12.5, 13.1-13.7) and the cases of each that
#: the CI subset runs.
COMPRESSION_GROUPS = [f"12.{g}" for g in range(1, 6)] + [f"13.{g}" for g in range(1, 8)]
CI_SAMPLE = (1, 2, 3, 4, 5, 11)


def selection(subset: str) -> list[str]:
    """The case ids and globs of a run: ``all`` or ``ci``."""
    if subset == "all":
        return [*ALL_CASES, *COMPRESSION_CASES]
    sample = [f"{group}.{n}" for group in COMPRESSION_GROUPS for n in CI_SAMPLE]
    return [*ALL_CASES, *sample]


def verdict(result: Any) -> str:
    """One word for a case: the worse of its message and close verdicts."""
    behavior = result.behavior.value
    close = result.behavior_close.value
    if behavior == "UNIMPLEMENTED":
        return "UNIMPLEMENTED"
    if behavior in ("FAILED", "ERROR") or close not in ("OK", "INFORMATIONAL"):
        return "FAILED"
    if behavior == "NON-STRICT":
        return "NON-STRICT"
    if behavior == "INFORMATIONAL" or close == "INFORMATIONAL":
        return "INFORMATIONAL"
    return "OK"


def section(case_id: str) -> str:
    """The table row of a case: its section, or its group in 12 and 13."""
    parts = case_id.split(".")
    return ".".join(parts[:2]) if parts[0] in ("12", "13") else parts[0]


def _order(key: str) -> tuple[int, ...]:
    return tuple(int(part) for part in key.split("."))


def table(results: Sequence[Any]) -> tuple[str, Counter]:
    """The summary table (one row per section) and the totals."""
    rows: dict[str, Counter] = {}
    for result in results:
        rows.setdefault(section(result.case_id), Counter())[verdict(result)] += 1
    totals: Counter = Counter()
    width = max(len(v) for v in VERDICTS)
    lines = ["section " + " ".join(f"{v:>{width}}" for v in VERDICTS)]
    for key in sorted(rows, key=_order):
        totals.update(rows[key])
        counts = " ".join(f"{rows[key][v]:>{width}}" for v in VERDICTS)
        lines.append(f"{key:<7} {counts}")
    counts = " ".join(f"{totals[v]:>{width}}" for v in VERDICTS)
    lines.append(f"{'total':<7} {counts}  ({sum(totals.values())} cases)")
    return "\n".join(lines), totals


def notes(results: Sequence[Any]) -> str:
    """Every case that was not plainly OK, with kosoku's reason."""
    lines = []
    for result in sorted(results, key=lambda r: _order(r.case_id)):
        word = verdict(result)
        if word != "OK":
            reason = result.result if word != "FAILED" else result.result_close
            lines.append(f"  {result.case_id:<8} {word:<13} {reason}")
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def echo_server(daphne: str, extra: Sequence[str] = ()) -> Iterator[int]:
    """daphne serving :mod:`conformance.echo` on a free port; yields it."""
    port = free_port()
    args = [
        daphne,
        "-e",
        f"tcp:{port}:interface=127.0.0.1",
        "--websocket-max-message-size",
        LARGE_LIMIT,
        "--websocket-max-frame-size",
        LARGE_LIMIT,
        *extra,
        "conformance.echo:application",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    LOG.parent.mkdir(exist_ok=True)
    log = LOG.open("w")  # (autobahn logs every failed connection it fails)
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"daphne exited with {proc.returncode}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if time.monotonic() > deadline:
                raise RuntimeError("daphne did not start listening")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def run_cases(port: int, cases: Sequence[str], concurrency: int = 2) -> list[Any]:
    """Run the cases against ``127.0.0.1:port``; every case's result."""
    import kosoku

    async def run() -> list[Any]:
        try:
            return list(
                await kosoku.run_fuzzingclient(
                    f"127.0.0.1:{port}", list(cases), None, concurrency=concurrency
                )
            )
        except kosoku.FailureError as error:
            return list(error.results)

    return asyncio.run(run())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--subset", choices=("all", "ci"), default="all")
    parser.add_argument(
        "--no-http1", action="store_true", help="skip the HTTP/1.1 framing probes"
    )
    parser.add_argument(
        "--daphne",
        default=str(ROOT / ".venv" / "bin" / "daphne"),
        help="the daphne executable to test (default: the project's .venv)",
    )
    parser.add_argument(
        "--engine",
        choices=("autobahn", "websockets"),
        default="websockets",
        help="daphne's --websocket-engine (default: websockets)",
    )
    parser.add_argument(
        "-j", "--concurrency", type=int, default=2, help="cases run at once"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    with echo_server(args.daphne, ["--websocket-engine", args.engine]) as port:
        results = run_cases(port, selection(args.subset), args.concurrency)
        probes = [] if args.no_http1 else http1.run_probes(port)
    summary, totals = table(results)
    print(
        f"Autobahn TestSuite ({args.subset}), by kosoku, against daphne "
        f"(--websocket-engine {args.engine}):"
    )
    print(summary)
    remarks = notes(results)
    if remarks:
        print("Not plainly OK:")
        print(remarks)
    probes_failed = 0
    if probes:
        text, probes_failed = http1.report(probes)
        print(text)
    print(f"({time.monotonic() - started:.0f} s)")
    bad = sum(totals[v] for v in FAILING) + probes_failed
    if bad or not results:
        print(
            f"FAILED: {bad} case(s) or probe(s) FAILED or UNIMPLEMENTED "
            f"(daphne's log: {LOG})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
