"""The Autobahn TestSuite's CI subset against a real daphne, with each
WebSocket engine (kosoku drives the TestSuite's case files over real
sockets).

Every case of sections 1-10 and cases 1-5 and 11 of each compression group
(12.x, 13.x): about 30 s. ``make conformance`` runs all 517. A case that is
FAILED or UNIMPLEMENTED fails this test, which prints the summary table.
The HTTP/1.1 framing probes of ``make conformance`` run here too.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import autobahn, http1
from daphne.config import WEBSOCKET_ENGINES

DAPHNE = str(Path(sys.executable).with_name("daphne"))
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
@pytest.mark.parametrize("engine", WEBSOCKET_ENGINES)
def test_autobahn_ci_subset_has_no_failed_or_unimplemented_case(engine):
    pytest.importorskip(
        "kosoku", reason="kosoku (the Autobahn TestSuite runner) is not installed"
    )
    # kosoku runs in an interpreter of its own: its case files import
    # autobahn's UTF-8 validator, and take autobahn's real one (which wants
    # bytes where they pass str) if autobahn is already imported, as it is
    # in a pytest process that has imported daphne.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "conformance.autobahn",
            "--subset",
            "ci",
            "--no-http1",
            "--engine",
            engine,
            "--daphne",
            DAPHNE,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    total = re.search(
        r"^total\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", done.stdout, re.M
    )
    assert total is not None, done.stdout
    ok, non_strict, informational, unimplemented, failed = map(int, total.groups())
    assert (unimplemented, failed) == (0, 0)
    assert ok + non_strict + informational == 373
    # The compression groups were all run (and compressed: none UNIMPLEMENTED).
    assert len(re.findall(r"^1[23]\.\d\s+6\s", done.stdout, re.M)) == 12


def test_http1_framing_probes_get_the_expected_answers():
    """Ambiguous framing is refused, nothing is smuggled behind it (the
    probes ``make conformance`` runs, over a real socket)."""
    with autobahn.echo_server(DAPHNE) as port:
        results = http1.run_probes(port)
    text, failed = http1.report(results)
    assert failed == 0, text
    assert len(results) == len(http1.PROBES)


def test_case_verdicts_take_the_worse_of_message_and_close():
    class Verdict:
        def __init__(self, value: str) -> None:
            self.value = value

    class Result:
        def __init__(self, behavior: str, close: str) -> None:
            self.behavior = Verdict(behavior)
            self.behavior_close = Verdict(close)

    assert autobahn.verdict(Result("OK", "OK")) == "OK"
    assert autobahn.verdict(Result("OK", "WRONG CODE")) == "FAILED"
    assert autobahn.verdict(Result("NON-STRICT", "OK")) == "NON-STRICT"
    assert autobahn.verdict(Result("OK", "INFORMATIONAL")) == "INFORMATIONAL"
    assert autobahn.verdict(Result("UNIMPLEMENTED", "OK")) == "UNIMPLEMENTED"
    assert autobahn.verdict(Result("ERROR", "OK")) == "FAILED"
    assert autobahn.section("12.3.11") == "12.3"
    assert autobahn.section("6.4.1") == "6"
