"""Draw the headline metric of each section of a results JSON as bars.

Run with the peers' virtualenv, which has matplotlib (run.py does)::

    benchmarks/.venv-peers/bin/python benchmarks/chart.py \\
        benchmarks/results/latest.json benchmarks/results/latest.png

One panel per workload, one bar per server (its median), labelled with the
value and the ratio to the baseline; servers without a value say n/a or
failed where their bar would be.
"""

import json
import math
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

COLOURS = {
    "daphne": "#0c7c59",
    "daphne4": "#7a7a7a",
    "uvicorn-h11": "#3b6ea8",
    "uvicorn-httptools": "#17375e",
    "hypercorn": "#c27c0e",
    "raw-twisted": "#b3b3b3",
    "autobahn": "#d9d9d9",
    "daphne1": "#a05a2c",
    "daphne-w1": "#5fae8f",
    "daphne-w2": "#0c7c59",
    "uvicorn-w1": "#4f7fb8",
    "uvicorn-w2": "#17375e",
    "gunicorn-asgi": "#8e44ad",
    "granian": "#c0392b",
    "granian-w2": "#c0392b",
}


def format_ratio(ratio):
    """``3.02x``; tiny ratios keep a significant digit (``0.002x``, not 0.00x)."""
    return f"{ratio:.3f}x" if ratio < 0.0995 else f"{ratio:.2f}x"


def value_text(value, kind):
    if kind == "rate":
        return f"{value:,.0f}"
    if kind == "ms":
        return f"{value:.2f} ms"
    if kind == "kib":
        return f"{value:,.1f} KiB"
    if kind == "mib":
        return f"{value:,.1f} MiB"
    return f"{value:g}"


def draw(result, png_path):
    servers = result["servers"]
    baseline = result["meta"]["baseline"]
    panels = []
    for wkey, workload in result["workloads"].items():
        section = result["summary"].get(wkey)
        metric = next(
            (m for m in workload["metrics"] if m["key"] == workload["headline"]), None
        )
        if section and metric:
            panels.append((wkey, workload, metric, section))
    if not panels:
        raise SystemExit("nothing to draw")

    columns = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / columns)
    height = max(2.2, 0.45 * len(servers) + 1.2)
    # Constrained layout leaves room for the figure's title above the first
    # row's own titles (tight_layout ignores the suptitle, so they overlapped).
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(7.0 * columns, height * rows + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for index, (_wkey, workload, metric, section) in enumerate(panels):
        axis = axes[index // columns][index % columns]
        keys = [key for key in servers if key in section]
        labels = [servers[key]["label"] for key in keys]
        values = []
        for key in keys:
            entry = section[key]
            median = entry.get("median", {}) if entry["status"] == "ok" else {}
            values.append(median.get(metric["key"]))
        drawn = [v if v is not None else 0 for v in values]
        positions = range(len(keys))
        axis.barh(
            positions,
            drawn,
            color=[COLOURS.get(key, "#888888") for key in keys],
            edgecolor=[
                "black" if key == workload.get("baseline", baseline) else "none"
                for key in keys
            ],
        )
        axis.set_yticks(list(positions), labels)
        axis.invert_yaxis()
        arrow = (
            "higher is better" if metric["better"] == "higher" else "lower is better"
        )
        title = textwrap.fill(workload["title"], 62)
        axis.set_title(f"{title}\n{metric['label']} ({arrow})", fontsize=10)
        top = max(drawn) if any(drawn) else 1.0
        axis.set_xlim(0, top * 1.45)
        axis.tick_params(labelsize=8)
        axis.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
        for position, key, value in zip(positions, keys, values, strict=True):
            entry = section[key]
            if value is None:
                text = "n/a" if entry["status"] == "unsupported" else entry["status"]
            else:
                text = value_text(value, metric["kind"])
                ratio = entry.get("ratio", {}).get(metric["key"])
                if ratio is not None:
                    text += f" ({format_ratio(ratio)})"
            axis.text(
                (value or 0) + top * 0.02,
                position,
                text,
                va="center",
                fontsize=8,
            )
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].axis("off")
    meta = result["meta"]
    figure.suptitle(
        f"daphne benchmark · {meta['mode']} · {meta['rounds']} round(s), medians · "
        f"{meta['started']}\n{machine_text(meta)}",
        fontsize=11,
    )
    figure.savefig(png_path, dpi=110)


def machine_text(meta):
    """The CPU and the Python version the servers ran on."""
    machine = meta.get("machine", {})
    cpu = machine.get("cpu_model") or "unknown CPU"
    if machine.get("cpus"):
        cpu += f" × {machine['cpus']}"
    versions = sorted({v for v in meta.get("pythons", {}).values() if v})
    python = ", ".join(versions) or machine.get("harness_python", "?")
    return f"{cpu} · Python {python}"


def main(argv):
    if len(argv) != 2:
        print("usage: chart.py RESULTS.json OUTPUT.png", file=sys.stderr)
        return 2
    with open(argv[0]) as handle:
        result = json.load(handle)
    draw(result, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
