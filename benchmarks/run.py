"""Benchmark daphne against its peers, in one run, and report medians.

Usage (from the repository root; ``make bench`` sets everything up first)::

    python3 benchmarks/run.py                 # 3 rounds, 10 s per HTTP run
    python3 benchmarks/run.py --quick         # 1 round, 3 s runs (~4 min)
    python3 benchmarks/run.py --servers daphne,daphne4 --workloads http-c64
    python3 benchmarks/run.py --servers daphne1 --workloads layer-http-c1
    python3 benchmarks/run.py --servers daphne-w1,daphne-w2,uvicorn-w2,granian-w2 \
        --workloads http-c64-cores

Each measurement starts a fresh server pinned to one CPU, waits until it
serves, loads it from another CPU, and kills its process group (the
multi-core section pins neither: worker processes and wrk share every CPU). Rounds go
through every workload and, within it, every server, in an order rotated
each round so no server always runs first. Results: ``results/latest.json``
(every run), ``results/latest.md`` (the table, also printed) and
``results/latest.png`` (drawn by chart.py with the peers' matplotlib).

Standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import report
from servers import (
    APP,
    BASELINE,
    BENCH_DIR,
    LAYER,
    PEERS,
    SERVERS,
    SERVERS_BY_KEY,
    Paths,
    RunningServer,
    ServerFailed,
    ServerSpec,
    child_env,
)
from workloads import (
    WORKLOADS,
    WORKLOADS_BY_KEY,
    HttpWrk,
    MeasurementFailed,
    Settings,
    Unsupported,
    Workload,
)

FULL = {"rounds": 3, "duration": 10, "warmup": 2, "ws_messages": 2000}
QUICK = {"rounds": 1, "duration": 3, "warmup": 1, "ws_messages": 500}
#: the load generator using more than this share of its CPU may be the limit
CLIENT_CPU_WARNING = 80.0


def csv_keys(known: dict, what: str):
    def parse(text: str) -> list[str]:
        keys = [key.strip() for key in text.split(",") if key.strip()]
        unknown = [key for key in keys if key not in known]
        if unknown or not keys:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(unknown) or '(none)'}; "
                f"choose from {', '.join(known)}"
            )
        return keys

    parse.__name__ = f"{what} list"
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Compare daphne with Daphne 4, uvicorn, hypercorn, gunicorn's "
        "ASGI worker, granian and a raw Twisted protocol on the same machine, "
        "in one run; in channel layer mode, with the original Daphne 1.4.2; "
        "and with worker processes on every CPU, daphne, uvicorn and granian "
        "--workers 2 against daphne --workers 1.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 round, 3 s HTTP runs, 1 s warm-up, 500 WebSocket messages",
    )
    parser.add_argument("--rounds", type=int, help="rounds (default 3; quick 1)")
    parser.add_argument(
        "--duration", type=int, help="seconds per HTTP run (default 10; quick 3)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        help="seconds of discarded load before each HTTP run (default 2; quick 1)",
    )
    parser.add_argument(
        "--servers",
        type=csv_keys(SERVERS_BY_KEY, "server"),
        default=[spec.key for spec in SERVERS],
        help="comma-separated subset of: " + ", ".join(SERVERS_BY_KEY),
    )
    parser.add_argument(
        "--workloads",
        "--tests",
        type=csv_keys(WORKLOADS_BY_KEY, "workload"),
        default=[workload.key for workload in WORKLOADS],
        help="comma-separated subset of: " + ", ".join(WORKLOADS_BY_KEY),
    )
    parser.add_argument("--ws-connections", type=int, default=32)
    parser.add_argument(
        "--ws-messages",
        type=int,
        help="echo messages per WebSocket connection (default 2000; quick 500)",
    )
    parser.add_argument("--ws-size", type=int, default=32, help="bytes per message")
    parser.add_argument("--idle-connections", type=int, default=1000)
    parser.add_argument(
        "--layer-workers",
        type=int,
        default=2,
        help="worker threads in layer_app (channel layer mode; default 2)",
    )
    parser.add_argument(
        "--layer-capacity",
        type=int,
        default=100,
        help="messages per channel in layer_app's layer (default 100)",
    )
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument(
        "--output-dir", type=Path, default=BENCH_DIR / "results", metavar="DIR"
    )
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument(
        "--main-venv", type=Path, default=Paths.main_venv, metavar="DIR"
    )
    parser.add_argument(
        "--peers-venv", type=Path, default=Paths.peers_venv, metavar="DIR"
    )
    parser.add_argument(
        "--daphne1-venv", type=Path, default=Paths.daphne1_venv, metavar="DIR"
    )
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.rounds < 1 or args.duration < 1 or args.warmup < 0:
        parser.error("--rounds and --duration must be at least 1, --warmup >= 0")
    if args.layer_workers < 1 or args.layer_capacity < 1:
        parser.error("--layer-workers and --layer-capacity must be at least 1")
    return args


# -- environment -------------------------------------------------------------------


def raise_file_limit() -> None:
    """Room for 1,000+ sockets in the servers and the client (inherited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def choose_cpus(args: argparse.Namespace) -> tuple[int | None, int | None]:
    if args.no_pin:
        return None, None
    if shutil.which("taskset") is None:
        warn("taskset not found: running unpinned")
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    server, load = args.server_cpu, args.load_cpu
    if server not in allowed or load not in allowed:
        warn(f"CPUs {server}/{load} not all available ({allowed}); using the first")
        server = allowed[0]
        load = allowed[1] if len(allowed) > 1 else allowed[0]
    if server == load:
        warn("server and load generator share a CPU: numbers mean little")
    return server, load


def python_version(python: Path) -> str:
    """The version of the Python a virtualenv runs its servers on ("" if none)."""
    if not python.exists():
        return ""
    try:
        done = subprocess.run(
            [str(python), "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=60,
            env=child_env(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def distributions(python: Path, names: list[str]) -> dict[str, str]:
    """Installed versions of ``names`` in the virtualenv of ``python``."""
    if not python.exists():
        return {}
    code = (
        "import json, sys, importlib.metadata as m\n"
        "found = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(found))\n"
    )
    try:
        done = subprocess.run(
            [str(python), "-c", code, *names],
            capture_output=True,
            text=True,
            timeout=60,
            env=child_env(),
            cwd=BENCH_DIR,
        )
        return json.loads(done.stdout or "{}")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return {}


def machine_info() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    wrk = ""
    if shutil.which("wrk"):
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        wrk = (done.stdout + done.stderr).splitlines()[0:1]
        wrk = wrk[0].strip() if wrk else ""
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "harness_python": platform.python_version(),
        "wrk": wrk,
    }


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- measuring ---------------------------------------------------------------------


def run_one(
    spec: ServerSpec,
    workload: Workload,
    settings: Settings,
    server_cpu: int | None,
    round_no: int,
) -> dict:
    record: dict = {
        "round": round_no,
        "workload": workload.key,
        "server": spec.key,
        "values": {},
        "warnings": [],
    }
    began = time.monotonic()
    log_path = settings.log_dir / f"{spec.key}--{workload.key}--r{round_no}.log"
    try:
        with RunningServer(
            spec,
            settings.paths,
            server_cpu if workload.pinned else None,
            log_path,
            mode=workload.mode,
            env=workload.server_env(settings),
            certificate=workload.certificate(settings),
        ) as server:
            record["startup_s"] = round(server.started_in, 3)
            values = workload.measure(server, settings)
        record["status"] = report.OK
        record["values"] = values
        record["warnings"] = warnings_for(values)
    except Unsupported as exc:
        record["status"] = report.UNSUPPORTED
        record["reason"] = str(exc)
    except (ServerFailed, MeasurementFailed) as exc:
        record["status"] = report.FAILED
        record["reason"] = str(exc)
    except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
        record["status"] = report.FAILED
        record["reason"] = f"{type(exc).__name__}: {exc}"
    record["elapsed_s"] = round(time.monotonic() - began, 3)
    return record


def warnings_for(values: dict) -> list[str]:
    found = []
    if values.get("non_2xx"):
        found.append(f"{values['non_2xx']} non-2xx responses")
    if values.get("socket_errors"):
        found.append(f"{values['socket_errors']} socket errors")
    if values.get("dropped_while_held"):
        found.append(f"{values['dropped_while_held']} connections dropped while held")
    cpu = values.get("client_cpu_pct")
    if cpu is not None and cpu > CLIENT_CPU_WARNING:
        found.append(f"load client at {cpu:.0f}% CPU: it may be the bottleneck")
    return found


def progress(record: dict, workload: Workload, label: str, rounds: int) -> str:
    head = f"[{record['round']}/{rounds}] {workload.key:<13} {label:<30}"
    if record["status"] != report.OK:
        return f"{head} {record['status']}: {record['reason']}"
    parts = []
    for metric in workload.metrics:
        value = record["values"].get(metric.key)
        if value is not None:
            parts.append(f"{report.format_value(value, metric.kind)} {metric.label}")
    return f"{head} {', '.join(parts)}  ({record['elapsed_s']:.1f} s)"


def measure_all(args, settings, specs, workloads, server_cpu, labels, runs) -> None:
    """Every round, workload and server; records are appended to ``runs``."""
    # (server, feature) -> reason, once a server has shown it lacks a feature
    lacking: dict[tuple[str, str], str] = {}
    for round_no in range(1, args.rounds + 1):
        shift = (round_no - 1) % len(specs)
        order = specs[shift:] + specs[:shift]
        for workload in workloads:
            for spec in order:
                if not workload.applies_to(spec):
                    continue  # not in this section at all: no record, no row
                feature = workload.feature
                reason = spec.lacks(feature)
                if reason is not None:
                    lacking.setdefault((spec.key, feature), reason)
                if feature is not None and (spec.key, feature) in lacking:
                    record = {
                        "round": round_no,
                        "workload": workload.key,
                        "server": spec.key,
                        "status": report.UNSUPPORTED,
                        "reason": lacking[(spec.key, feature)],
                        "values": {},
                        "warnings": [],
                    }
                else:
                    record = run_one(spec, workload, settings, server_cpu, round_no)
                    if record["status"] == report.UNSUPPORTED and feature:
                        lacking[(spec.key, feature)] = record["reason"]
                    say(progress(record, workload, labels[spec.key], args.rounds))
                runs.append(record)


# -- output ------------------------------------------------------------------------


def draw_chart(paths: Paths, json_path: Path, png_path: Path) -> str | None:
    """Run chart.py with the peers' matplotlib; an error message, or None."""
    python = paths.peers_python
    if not python.exists():
        return f"{python} not found"
    env = child_env()
    env["MPLBACKEND"] = "Agg"
    try:
        done = subprocess.run(
            [str(python), str(BENCH_DIR / "chart.py"), str(json_path), str(png_path)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return "chart.py took over 120 s"
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["failed"])[-1]
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now().astimezone()
    began = time.monotonic()
    paths = Paths(
        main_venv=args.main_venv.resolve(),
        peers_venv=args.peers_venv.resolve(),
        daphne1_venv=args.daphne1_venv.resolve(),
    )
    specs = [SERVERS_BY_KEY[key] for key in args.servers]
    workloads = [WORKLOADS_BY_KEY[key] for key in args.workloads]
    if any(isinstance(w, HttpWrk) for w in workloads) and not shutil.which("wrk"):
        print("error: wrk not found (`make bench` installs it)", file=sys.stderr)
        return 2

    for workload in workloads:
        if not any(workload.applies_to(spec) for spec in specs):
            names = workload.servers or ()
            warn(
                f"no server of --servers runs in {workload.key}"
                + (f" (its servers: {', '.join(names)})" if names else "")
            )

    raise_file_limit()
    server_cpu, load_cpu = choose_cpus(args)
    output = args.output_dir.resolve()
    log_dir = output / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    settings = Settings(
        paths=paths,
        load_cpu=load_cpu,
        duration=args.duration,
        warmup=args.warmup,
        ws_connections=args.ws_connections,
        ws_messages=args.ws_messages,
        ws_size=args.ws_size,
        idle_connections=args.idle_connections,
        log_dir=log_dir,
        layer_workers=args.layer_workers,
        layer_capacity=args.layer_capacity,
    )

    main_versions = distributions(
        paths.bin("main") / "python",
        [
            "daphne",
            "twisted",
            "websockets",
            "autobahn",
            "uvloop",
            "httptools",
            "h2",
            "channels_redis",
            "redis",
        ],
    )
    peer_versions = distributions(
        paths.peers_python,
        [
            "daphne",
            "uvicorn",
            "hypercorn",
            "granian",
            "gunicorn",
            "twisted",
            "autobahn",
            "uvloop",
            "httptools",
            "h11",
            "websockets",
            "wsproto",
            "matplotlib",
        ],
    )
    daphne1_versions = distributions(
        paths.bin("daphne1") / "python",
        ["daphne", "asgiref", "twisted", "autobahn", "asgi_redis", "redis", "msgpack"],
    )
    versions = {
        "main": main_versions,
        "peers": peer_versions,
        "daphne1": daphne1_versions,
    }
    pythons = {
        venv: python_version(paths.bin(venv) / "python")
        for venv in ("main", "peers", "daphne1")
    }
    servers_meta = {}
    labels = {}
    for spec in specs:
        version = versions[spec.venv].get(spec.distribution or "")
        labels[spec.key] = spec.display(version)
        servers_meta[spec.key] = {
            "label": labels[spec.key],
            "version": version,
            "venv": spec.venv,
            "command": spec.command(paths, 0, APP) or None,
            "layer_command": spec.command(paths, 0, LAYER) or None,
            "note": spec.note,
            "features": spec.features,
            "peer": PEERS.get(spec.key),
        }
    loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    mode = "quick" if args.quick else "full"
    say(
        f"daphne benchmark, {mode} mode: {args.rounds} round(s), "
        f"{len(specs)} servers, {len(workloads)} workloads; "
        f"servers on CPU {server_cpu}, load on CPU {load_cpu}; "
        f"load average {loadavg}"
    )

    interrupted = False
    runs: list[dict] = []
    try:
        measure_all(args, settings, specs, workloads, server_cpu, labels, runs)
    except KeyboardInterrupt:
        interrupted = True
        warn("interrupted: writing what was measured so far")

    workloads_meta = {
        w.key: {
            "title": w.title_for(settings),
            "feature": w.feature,
            "mode": w.mode,
            "baseline": w.baseline or BASELINE,
            "headline": w.headline,
            "pinned": w.pinned,
            "note": w.note,
            "metrics": [
                {
                    "key": m.key,
                    "label": m.label,
                    "kind": m.kind,
                    "better": m.better,
                    "compare": m.compare,
                }
                for m in w.metrics
            ],
            "settings": w.describe(settings),
        }
        for w in workloads
    }
    elapsed = time.monotonic() - began
    result = {
        "meta": {
            "started": started.isoformat(timespec="seconds"),
            "elapsed_s": round(elapsed, 1),
            "mode": mode,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "baseline": BASELINE,
            "server_cpu": server_cpu,
            "load_cpu": load_cpu,
            "loadavg_start": loadavg,
            "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "interrupted": interrupted,
            "machine": machine_info(),
            "versions": versions,
            "pythons": pythons,
        },
        "servers": servers_meta,
        "workloads": workloads_meta,
        "runs": runs,
    }
    result["summary"] = report.summarize(runs, workloads_meta, servers_meta, BASELINE)
    table = report.markdown(result)

    json_path = output / "latest.json"
    md_path = output / "latest.md"
    png_path = output / "latest.png"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(table)
    written = [json_path, md_path]
    if not args.no_chart:
        problem = draw_chart(paths, json_path, png_path)
        if problem:
            warn(f"no chart: {problem}")
        else:
            written.append(png_path)
    say("wrote " + ", ".join(str(p) for p in written))
    say(f"total {elapsed:.0f} s")
    print()
    print(table, end="")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
