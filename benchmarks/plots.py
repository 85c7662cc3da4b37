"""Draw the benchmark pictures the docs show, from measured results.

    python benchmarks/plots.py                       # newest full results
    python benchmarks/plots.py results/a.json ...    # these files
    python benchmarks/plots.py --out docs/img

Each picture takes its scenario from the newest of the given files (by their
own timestamp) that has it, skipping ``--quick`` runs unless only those
exist. Writes small PNGs:

- ``bench-connect.png``: connect + first query per contender, median and
  p10-p90;
- ``bench-contention.png``: success rate and median wall time per retry
  policy as writers grow;
- ``bench-region.png``: commits per 100 ms by Region while the first fails
  and recovers, the outage shaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

RESULTS_DIR = Path(__file__).parent / "results"
OUT_DIR = Path(__file__).parent.parent / "docs" / "img"
DPI = 80
STYLE = {"font.size": 9, "axes.spines.top": False, "axes.spines.right": False}


def load(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The results, newest first; full runs before quick ones."""
    runs = [json.loads(p.read_text()) | {"_path": str(p)} for p in paths]
    runs.sort(key=lambda r: r["meta"]["timestamp"], reverse=True)
    runs.sort(key=lambda r: bool(r["meta"].get("quick")))
    return runs


def pick(runs: list[dict[str, Any]], scenario: str) -> dict[str, Any] | None:
    for run in runs:
        if scenario in run["scenarios"]:
            return run
    return None


def _source(ax: Any, run: dict[str, Any]) -> None:
    ax.annotate(
        f"{Path(run['_path']).name}, {run['meta']['cpus']} CPUs",
        xy=(1.0, -0.01),
        xycoords="figure fraction",
        ha="right",
        va="bottom",
        fontsize=7,
        color="grey",
    )


def plot_connect(run: dict[str, Any], out: Path) -> Path:
    r = run["scenarios"]["connect"]
    names = list(r["seconds"])
    medians = [r["seconds"][n]["median"] * 1e3 for n in names]
    lows = [
        m - r["seconds"][n]["p10"] * 1e3 for n, m in zip(names, medians, strict=True)
    ]
    highs = [
        r["seconds"][n]["p90"] * 1e3 - m for n, m in zip(names, medians, strict=True)
    ]
    cpu = [r["client_cpu_seconds"][n]["median"] * 1e3 for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.2))
    y = range(len(names))
    ax.barh(y, medians, xerr=[lows, highs], color="#4c78a8", label="wall")
    ax.barh(y, cpu, height=0.35, color="#f58518", label="client CPU")
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ms per connect + SELECT 1 (median, p10-p90; log scale)")
    ax.set_title(f"Connect cost per variant (N = {r['n']})")
    ax.legend(loc="upper right", frameon=False)
    _source(ax, run)
    return _save(fig, out / "bench-connect.png")


def plot_contention(run: dict[str, Any], out: Path) -> Path:
    r = run["scenarios"]["contention"]
    writers = r["writers"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, per_k in r["policies"].items():
        rates = [per_k[str(k)]["success_rate"] * 100 for k in writers]
        walls = [per_k[str(k)]["wall_seconds"]["median"] for k in writers]
        style = "-" if name.startswith("ours") else "--"
        width = 2.2 if name.startswith("ours") else 1.0
        left.plot(writers, rates, style, marker="o", lw=width, ms=3, label=name)
        right.plot(writers, walls, style, marker="o", lw=width, ms=3)
    left.set_title("transactions committed")
    left.set_ylabel("%")
    left.set_xlabel("writers on one row")
    right.set_title("median wall time of a round")
    right.set_ylabel("s")
    right.set_xlabel("writers on one row")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(writers, [str(k) for k in writers])
    fig.legend(loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.subplots_adjust(bottom=0.38, wspace=0.3)
    _source(left, run)
    return _save(fig, out / "bench-contention.png", tight=False)


def plot_region(run: dict[str, Any], out: Path) -> Path:
    r = run["scenarios"]["region"]
    width = r["bin_seconds"]
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.axvspan(r["failed_at"], r["restored_at"], color="#e45756", alpha=0.15)
    ax.text(
        (r["failed_at"] + r["restored_at"]) / 2,
        1.0,
        f"{r['home_region']} failed",
        transform=ax.get_xaxis_transform(),
        ha="center",
        va="bottom",
        color="#e45756",
    )
    for region, counts in r["commits_per_bin"].items():
        xs = [i * width for i in range(len(counts))]
        ax.step(xs, counts, where="post", label=region, lw=1.2)
    ax.set_xlabel("seconds")
    ax.set_ylabel(f"commits per {width * 1e3:g} ms")
    ax.set_title(
        f"{r['writers']} writers, one pool over both Regions"
        f" (endpoint_cooldown = {r['endpoint_cooldown']:g} s)",
        pad=14,
    )
    ax.legend(frameon=False, loc="upper right")
    _source(ax, run)
    return _save(fig, out / "bench-region.png")


def _save(fig: Any, path: Path, *, tight: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path


PLOTS = {
    "connect": plot_connect,
    "contention": plot_contention,
    "region": plot_region,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", type=Path, help="results JSON files")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where to write")
    args = parser.parse_args(argv)
    paths = args.results or sorted(RESULTS_DIR.glob("*.json"))
    if not paths:
        parser.error(f"no results in {RESULTS_DIR}: run benchmarks/run.py first")
    runs = load(paths)
    plt.rcParams.update(STYLE)
    for scenario, plot in PLOTS.items():
        run = pick(runs, scenario)
        if run is None:
            print(f"{scenario}: no results, no picture", file=sys.stderr)
            continue
        path = plot(run, args.out)
        size = path.stat().st_size // 1024
        print(f"{path} ({size} KiB, from {Path(run['_path']).name})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
