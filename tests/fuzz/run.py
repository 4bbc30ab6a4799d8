"""``make fuzz``: every fuzz target with the ``fuzz`` profile, a few pytest processes at once.

Each target (one pytest node) runs in its own process, biggest first, ``--jobs`` at a
time, so the run uses the machine's cores and a failure in one target leaves the others
running. The inputs each target ran are collected from the processes and printed with
the total, which must reach the million the profile promises. Exit status 1 when any
target failed or the total fell short.

Usage: python -m tests.fuzz.run [--jobs N] [NODE ...]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.fuzz import harness

ROOT = Path(__file__).parents[2]
PATHS = ["tests/fuzz", "tests/integration/test_fuzz_daemon.py"]
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout=3600"]


def collect(paths: list[str], env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        [*PYTEST, "--collect-only", *paths], cwd=ROOT, env=env, capture_output=True, text=True
    )
    nodes = [line for line in out.stdout.splitlines() if "::" in line]
    if out.returncode != 0 or not nodes:
        sys.exit(f"collection failed:\n{out.stdout}{out.stderr}")
    return nodes


def weight_of(node: str) -> float:
    """The node's declared weight (its share of the inputs), to start big targets first."""
    path, _, test = node.partition("::")
    module = path.removesuffix(".py").replace("/", ".")
    importlib.import_module(module)
    short = f"{module.rpartition('.')[2]}::{test}"
    return next((w for name, w in harness.WEIGHTS.items() if name.startswith(short)), 1.0)


def run_node(
    index: int, node: str, env: dict[str, str], counts_dir: Path
) -> tuple[str, int, str, float]:
    counts_file = counts_dir / f"{index}.json"
    started = time.monotonic()
    proc = subprocess.run(
        [*PYTEST, node],
        cwd=ROOT,
        env={**env, harness.COUNTS_ENV: str(counts_file)},
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    status = "passed" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    cost = ""
    if counts_file.exists():
        report = json.loads(counts_file.read_text())
        runs = sum(r for r, _ in report["counts"].values())
        cost = f"{runs:>9,} inputs, {report['cpu_seconds'] / max(runs, 1) * 1000:5.2f} ms CPU each"
    print(f"{status:>20}  {elapsed / 60:5.1f} min  {cost:<36}  {node}", flush=True)
    return node, proc.returncode, proc.stdout + proc.stderr, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("nodes", nargs="*", help="pytest node ids (default: every target)")
    args = parser.parse_args()
    env = {**os.environ, harness.PROFILE_ENV: harness.FUZZ}
    nodes = args.nodes or collect(PATHS, env)
    nodes.sort(key=weight_of, reverse=True)
    print(f"{len(nodes)} fuzz targets, {args.jobs} at a time", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        jobs = [pool.submit(run_node, i, node, env, Path(tmp)) for i, node in enumerate(nodes)]
        results = [job.result() for job in jobs]
        counts: dict[str, list[int]] = {}
        for path in Path(tmp).glob("*.json"):
            counts.update(json.loads(path.read_text())["counts"])
    failed = [(node, output) for node, code, output, _ in results if code != 0]
    for node, output in failed:
        print(f"\n===== {node} =====\n{output[-6000:]}")
    print()
    for line in harness.count_table(counts) if counts else ["no inputs counted"]:
        print(line)
    total = sum(runs for runs, _ in counts.values())
    print(f"wall time {(time.monotonic() - started) / 60:.1f} min; {len(failed)} target(s) failed")
    minimum = harness.MINIMUM_FUZZ_TOTAL * harness.scale()
    if not args.nodes and total < minimum:
        print(f"only {total:,} inputs: fewer than {minimum:,.0f}")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
