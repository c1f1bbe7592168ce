"""The Autobahn TestSuite's CI subset against a real daphne (kosoku drives
the TestSuite's case files over real sockets).

Every case of sections 1-10 and cases 1-5 and 11 of each compression group
(12.x, 13.x): about 30 s. ``make conformance`` runs all 517. A case that is
FAILED or UNIMPLEMENTED fails this test, which prints the summary table.
The HTTP/1.1 framing probes of ``make conformance`` run here too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conformance import autobahn, http1

DAPHNE = str(Path(sys.executable).with_name("daphne"))


@pytest.mark.timeout(300)
def test_autobahn_ci_subset_has_no_failed_or_unimplemented_case():
    pytest.importorskip(
        "kosoku", reason="kosoku (the Autobahn TestSuite runner) is not installed"
    )
    with autobahn.echo_server(DAPHNE) as port:
        results = autobahn.run_cases(port, autobahn.selection("ci"))
    summary, totals = autobahn.table(results)
    print(summary)
    assert len(results) == 373, summary
    assert totals["FAILED"] == 0, summary + "\n" + autobahn.notes(results)
    assert totals["UNIMPLEMENTED"] == 0, summary
    # The compression cases were run, and compressed: none is UNIMPLEMENTED.
    assert sum(1 for r in results if r.case_id.startswith("13.")) == 42


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
