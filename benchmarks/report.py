"""From raw runs to medians, ratios and the Markdown report. Standard library only.

The summary is built from the JSON-able ``runs`` list alone, so a saved
``latest.json`` can be re-rendered (``python3 benchmarks/report.py FILE``).
"""

from __future__ import annotations

import json
import statistics
import sys

OK, UNSUPPORTED, FAILED = "ok", "unsupported", "failed"


def section_baseline(workload: dict, baseline: str) -> str:
    """The server a section's ratios are against: its own, else the run's."""
    return workload.get("baseline") or baseline


def summarize(runs: list[dict], workloads: dict, servers: dict, baseline: str) -> dict:
    """Per workload and server: status, median of each metric, ratio to baseline.

    A server is "ok" for a workload if at least one round measured it; then
    the medians are over the rounds that did. Otherwise it is "unsupported"
    (n/a) if any round said so, else "failed". The baseline is the
    workload's own ``baseline`` if it names one (the channel-layer sections:
    Daphne 1.4.2), else ``baseline``.
    """
    summary: dict = {}
    for wkey, workload in workloads.items():
        section: dict = {}
        for skey in servers:
            mine = [r for r in runs if r["workload"] == wkey and r["server"] == skey]
            if not mine:
                continue
            good = [r for r in mine if r["status"] == OK]
            entry: dict = {"rounds": len(good), "attempts": len(mine)}
            if good:
                entry["status"] = OK
                entry["median"] = {}
                for metric in workload["metrics"]:
                    values = [
                        r["values"][metric["key"]]
                        for r in good
                        if r["values"].get(metric["key"]) is not None
                    ]
                    if values:
                        entry["median"][metric["key"]] = statistics.median(values)
                warnings = [w for r in good for w in r.get("warnings", [])]
                if warnings:
                    entry["warnings"] = sorted(set(warnings))
                failures = [r["reason"] for r in mine if r["status"] == FAILED]
                if failures:
                    entry["failed_rounds"] = failures
            else:
                statuses = {r["status"] for r in mine}
                entry["status"] = UNSUPPORTED if UNSUPPORTED in statuses else FAILED
                entry["reason"] = next(
                    r["reason"] for r in mine if r["status"] == entry["status"]
                )
            section[skey] = entry
        base = section.get(section_baseline(workload, baseline), {})
        for entry in section.values():
            if entry["status"] != OK or base.get("status") != OK:
                continue
            entry["ratio"] = {}
            for metric in workload["metrics"]:
                if not metric.get("compare", True):
                    continue
                mine_value = entry["median"].get(metric["key"])
                base_value = base["median"].get(metric["key"])
                if mine_value is not None and base_value:
                    entry["ratio"][metric["key"]] = mine_value / base_value
        summary[wkey] = section
    return summary


# -- formatting --------------------------------------------------------------------


def format_value(value: float, kind: str) -> str:
    if kind == "rate":
        return f"{value:,.0f}"
    if kind == "ms":
        if value < 1:
            return f"{value:.3f}"
        if value < 10:
            return f"{value:.2f}"
        if value < 100:
            return f"{value:.1f}"
        return f"{value:,.0f}"
    if kind == "pct":
        return f"{value:.0f}%"
    if kind in ("kib", "mib"):
        return f"{value:,.1f}"
    return f"{value:g}"


def format_ratio(ratio: float) -> str:
    """``3.02x``; tiny ratios keep a significant digit (``0.002x``, not 0.00x)."""
    return f"{ratio:.3f}x" if ratio < 0.0995 else f"{ratio:.2f}x"


def cell(entry: dict, metric: dict) -> str:
    if entry is None:
        return ""
    if entry["status"] == UNSUPPORTED:
        return "n/a"
    if entry["status"] == FAILED:
        return "failed"
    value = entry["median"].get(metric["key"])
    if value is None:
        return "–"
    text = format_value(value, metric["kind"])
    ratio = entry.get("ratio", {}).get(metric["key"])
    if ratio is not None:
        text += f" ({format_ratio(ratio)})"
    return text


def markdown(result: dict) -> str:
    meta = result["meta"]
    servers = result["servers"]
    workloads = result["workloads"]
    summary = result["summary"]
    baseline = meta["baseline"]
    base_label = servers.get(baseline, {}).get("label", baseline)
    unpinned = [w for w in workloads.values() if w.get("pinned") is False]
    pinning = f"servers on CPU {meta['server_cpu']}, load on CPU {meta['load_cpu']}"
    if unpinned:
        pinning += " (both unpinned in the multi-core section)"
    lines = [
        "# daphne benchmark",
        "",
        f"{meta['started']} · {meta['mode']} mode · {meta['rounds']} round(s), "
        f"median per cell · {pinning} · load average at start "
        f"{meta['loadavg_start']} · {meta['elapsed_s']:.0f} s in all",
        "",
        machine_line(meta),
        "",
        f"Each cell: median (value ÷ **{base_label}**'s, unless the section "
        "names another baseline). ↑ higher is better "
        "(throughput), ↓ lower is better (latency, memory): there a ratio under "
        "1.00x beats the baseline. A server without a section's feature has no "
        "row there.",
    ]
    notes: list[str] = []
    for wkey, workload in workloads.items():
        section = summary.get(wkey)
        if not section:
            continue
        metrics = workload["metrics"]
        wbase = section_baseline(workload, baseline)
        lines += ["", f"## {workload['title']}", ""]
        if workload.get("note"):
            lines += [workload["note"], ""]
        if wbase != baseline:
            wbase_label = servers.get(wbase, {}).get("label", wbase)
            lines += [
                f"Ratios in this section: value ÷ **{wbase_label}**'s "
                f"(not {base_label}'s).",
                "",
            ]
        header = ["server"] + [
            m["label"] + (" ↑" if m["better"] == "higher" else " ↓")
            if m.get("compare", True)
            else m["label"]
            for m in metrics
        ]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join([":--"] + ["--:"] * len(metrics)) + "|")
        for skey, spec in servers.items():
            entry = section.get(skey)
            if entry is None:
                continue
            if entry["status"] == UNSUPPORTED and skey != OURS:
                # A peer without the feature has no row (daphne keeps its
                # n/a, which says what is still missing).
                continue
            label = spec["label"]
            if skey == wbase:
                label = f"**{label}**"
            marks = ""
            if entry["status"] in (UNSUPPORTED, FAILED) or entry.get("warnings"):
                notes.append(note_for(workload["title"], spec["label"], entry))
                marks = f" [{len(notes)}]"
            row = [label + marks] + [cell(entry, m) for m in metrics]
            lines.append("| " + " | ".join(row) + " |")
        headroom = headroom_line(section, servers, workload)
        if headroom:
            lines += ["", headroom]
        lines += peer_lines(section, servers, workload)
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"{i}. {text}" for i, text in enumerate(notes, 1)]
    lines += ["", "Servers:", ""]
    for skey, spec in servers.items():
        version = f" {spec['version']}" if spec.get("version") else ""
        extra = f": {spec['note']}" if spec.get("note") else ""
        lines.append(f"- {spec['label']} (`{skey}`{version}){extra}")
    return "\n".join(lines) + "\n"


def machine_line(meta: dict) -> str:
    """The CPU and the Pythons the servers ran on (older results may lack
    some of it)."""
    machine = meta.get("machine", {})
    cpu = machine.get("cpu_model") or "unknown CPU"
    if machine.get("cpus"):
        cpu += f" × {machine['cpus']} CPUs"
    if machine.get("kernel"):
        cpu += f", Linux {machine['kernel']}"
    pythons = {venv: v for venv, v in meta.get("pythons", {}).items() if v}
    names = {"main": "daphne", "peers": "peers", "daphne1": "Daphne 1.4.2"}
    if len(set(pythons.values())) == 1:
        python = f"Python {next(iter(pythons.values()))}"
    elif pythons:
        python = "Python " + ", ".join(
            f"{v} ({names.get(venv, venv)})" for venv, v in pythons.items()
        )
    else:
        python = f"Python {machine.get('harness_python', '?')} (the harness)"
    return f"Machine: {cpu} · {python}"


#: The server this benchmark is about.
OURS = "daphne"

#: Servers that show the ceiling of daphne's stack: Twisted alone (HTTP) and
#: autobahn's own echo server (WebSocket), on daphne's reactor and loop.
LIMITS = ("raw-twisted", "autobahn")


def headroom_line(section: dict, servers: dict, workload: dict) -> str:
    """The "daphne reaches N% of <limit>" line, for the section's headline metric."""
    key = workload.get("headline")
    ours = section.get("daphne")
    better = {m["key"]: m["better"] for m in workload["metrics"]}.get(key)
    if better != "higher" or not ours or ours["status"] != OK:
        return ""  # (a share of a limit means something for throughput only)
    parts = []
    for limit in LIMITS:
        entry = section.get(limit)
        if not entry or entry["status"] != OK:
            continue
        mine, theirs = ours["median"].get(key), entry["median"].get(key)
        if mine and theirs:
            label = servers.get(limit, {}).get("label", limit)
            parts.append(f"{mine / theirs:.0%} of {label}")
    return f"daphne reaches {', '.join(parts)}." if parts else ""


def peer_lines(section: dict, servers: dict, workload: dict) -> list[str]:
    """A row measured against its peer of the same arrangement, besides the
    section's baseline (``daphne-redis`` against ``daphne1-redis``): one line
    each, with the ratio of every compared metric."""
    lines = []
    for skey, spec in servers.items():
        peer = spec.get("peer")
        mine, theirs = section.get(skey), section.get(peer or "")
        if not mine or not theirs or mine["status"] != OK or theirs["status"] != OK:
            continue
        parts = []
        for metric in workload["metrics"]:
            if not metric.get("compare", True):
                continue
            a = mine["median"].get(metric["key"])
            b = theirs["median"].get(metric["key"])
            if a is not None and b:
                arrow = " ↑" if metric["better"] == "higher" else " ↓"
                parts.append(f"{metric['label']}{arrow} {format_ratio(a / b)}")
        if parts:
            peer_label = servers.get(peer, {}).get("label", peer)
            lines += [
                "",
                f"{spec['label']} ÷ {peer_label} (same arrangement): "
                + ", ".join(parts)
                + ".",
            ]
    return lines


def note_for(title: str, label: str, entry: dict) -> str:
    if entry["status"] == UNSUPPORTED:
        return f"{label}, {title}: n/a ({entry['reason']})"
    if entry["status"] == FAILED:
        return f"{label}, {title}: failed ({entry['reason']})"
    return f"{label}, {title}: " + "; ".join(entry["warnings"])


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: report.py RESULTS.json", file=sys.stderr)
        return 2
    with open(argv[0]) as handle:
        print(markdown(json.load(handle)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
