"""Plots from the JSON results in bench/out/: fire_lag.png (lag CDF) and throughput.png.

/work/benchvenv/bin/python bench/plot.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"


def _written(path: Path) -> float:
    return path.stat().st_mtime  # results in the order they were measured


def load(pattern: str) -> list[dict]:
    """The results matching `pattern`, or only those named on the command line."""
    chosen = [Path(a) for a in sys.argv[1:]]
    paths = (
        [p for p in chosen if p.match(pattern)]
        if chosen
        else sorted(OUT.glob(pattern), key=_written)
    )
    return [json.loads(p.read_text()) for p in paths]


def fire_lag() -> None:
    results = load("fire_precision*.json")
    if not results:
        print("no fire_precision results; skipped fire_lag.png", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for r in results:
        cdf = r["lag_cdf_ms"]
        p = r["params"]
        ranks = [100 * i / (len(cdf) - 1) for i in range(len(cdf))]
        label = (
            f"{p['jobs']} jobs, {p['runners']} runners, concurrency {p['concurrency']}"
            f" (p50 {r['lag_ms']['p50']:.1f}, p99 {r['lag_ms']['p99']:.1f} ms)"
        )
        ax.plot(cdf, ranks, label=label)
    ax.axvline(5, color="grey", linestyle=":", linewidth=1)
    ax.axvline(20, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("lag = started_at - scheduled_for (ms, log scale; targets 5 / 20 ms)")
    ax.set_ylabel("percentile")
    ax.set_title("pgsched fire precision, '* * * * * *' jobs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(BENCH / "fire_lag.png")
    print(f"wrote {BENCH / 'fire_lag.png'}")


def throughput() -> None:
    bars: list[tuple[str, float, str]] = []
    drains = load("drain*.json")
    for n, r in enumerate(drains, 1):
        run = f" (run {n})" if len(drains) > 1 else ""
        for key, v in r["results"].items():
            label = (
                "raw SQL ceiling, 4 procs" if key == "ceiling" else f"pgsched, {key[8:]} runner(s)"
            )
            bars.append(
                (label + run, v["runs_per_s"], "tab:grey" if key == "ceiling" else "tab:blue")
            )
    for r in load("peers*.json"):
        for system, v in r["results"].items():
            if system == "pgsched":
                continue
            for key, d in v.items():
                if key.startswith("drain_"):
                    colour = "tab:orange" if system == "pgqueuer" else "tab:green"
                    bars.append((f"{system}, {d['workers']} worker(s)", d["runs_per_s"], colour))
    if not bars:
        print("no drain/peers results; skipped throughput.png", file=sys.stderr)
        return
    # Horizontal bars: one line per label however many results are plotted.
    fig, ax = plt.subplots(figsize=(7.2, 0.8 + 0.3 * len(bars)), dpi=100)
    ax.barh(range(len(bars)), [b[1] for b in bars], color=[b[2] for b in bars])
    ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=7)
    ax.invert_yaxis()
    for i, b in enumerate(bars):
        ax.text(b[1], i, f" {b[1]:,.0f}", ha="left", va="center", fontsize=7)
    ax.axvline(25_000, color="red", linestyle="--", linewidth=1, label="target 25,000 runs/s")
    ax.set_xlim(0, 1.15 * max(b[1] for b in bars))
    ax.set_xlabel("runs/s (no-op, fsync on)")
    ax.set_title("Drain: 100,000 pending no-op requests (Procrastinate: 20,000)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(BENCH / "throughput.png")
    print(f"wrote {BENCH / 'throughput.png'}")


if __name__ == "__main__":
    fire_lag()
    throughput()
