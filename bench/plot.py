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


def load(pattern: str) -> list[dict]:
    """The results matching `pattern`, or only those named on the command line."""
    chosen = [Path(a) for a in sys.argv[1:]]
    paths = [p for p in chosen if p.match(pattern)] if chosen else sorted(OUT.glob(pattern))
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
    for r in load("drain*.json"):
        for key, v in r["results"].items():
            label = (
                "raw SQL ceiling\n(4 procs)"
                if key == "ceiling"
                else f"pgsched\n{key[8:]} runner(s)"
            )
            bars.append((label, v["runs_per_s"], "tab:grey" if key == "ceiling" else "tab:blue"))
    for r in load("peers*.json"):
        for system, v in r["results"].items():
            if system == "pgsched":
                continue
            for key, d in v.items():
                if key.startswith("drain_"):
                    colour = "tab:orange" if system == "pgqueuer" else "tab:green"
                    bars.append((f"{system}\n{d['workers']} worker(s)", d["runs_per_s"], colour))
    if not bars:
        print("no drain/peers results; skipped throughput.png", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7.2, 3.6), dpi=100)
    ax.bar(range(len(bars)), [b[1] for b in bars], color=[b[2] for b in bars])
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=7)
    for i, b in enumerate(bars):
        ax.text(i, b[1], f"{b[1]:,.0f}", ha="center", va="bottom", fontsize=7)
    ax.axhline(25_000, color="red", linestyle="--", linewidth=1, label="target 25,000 runs/s")
    ax.set_ylabel("runs/s (no-op, fsync on)")
    ax.set_title("Drain throughput: 100,000 pending no-op requests (Procrastinate: 20,000)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(BENCH / "throughput.png")
    print(f"wrote {BENCH / 'throughput.png'}")


if __name__ == "__main__":
    fire_lag()
    throughput()
