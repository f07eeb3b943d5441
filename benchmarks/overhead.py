"""What the engine costs: `relay run` (Ray, MLflow, Parquet) against the same stages in a plain script.

Both sides are fresh processes timed end to end (interpreter start and imports included, as a
user would see them). The plain side is ``_common.run_in_process``: the same stage functions,
params, ``stage_seed`` seeds and torch thread count as ``run_stage_body``, outputs kept in
memory. Both must produce the same balanced accuracy per generation (|diff| <= 1e-6), or the
comparison is void and the script fails.

Reported per config: median wall times, their ratio, and (relay - plain) / stages. A near-zero
step config (train.steps=1) isolates the fixed costs; running it at G and 2G generations splits
them into a one-off start-up cost and a marginal cost per stage (the slope).

Ray's own start is timed alone beside them: a fresh process that imports ray, then
``ray.init`` and ``ray.shutdown`` with the options ``RayExecutor`` uses for a local instance
(``orchestrator.engine.ray_session.init_kwargs``: dashboard on, default CPUs), so the one-off
cost can be split into what Ray itself takes and what Relay adds on top.
Goals: ratio <= 1.05 at demo scale, fixed overhead < 0.5 s per stage; one-off start-up
at most 3 s beyond Ray's own start.

Usage: python benchmarks/overhead.py [--repeats 3] [--demo-repeats 1] [--skip-demo]
       python benchmarks/overhead.py --plain CONFIG [key=value ...]   (one plain run; prints JSON)
       python benchmarks/overhead.py --ray-alone                       (one Ray start; prints JSON)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

CONFIG = "pipelines/configs/crest_digits.yaml"
RELAY = str(Path(sys.executable).with_name("relay"))
NEAR_ZERO = ["train.steps=1", "train.report_every=1"]
TOLERANCE = 1e-6
GOAL_STARTUP_BEYOND_RAY_S = 3.0


def plain_main(config_path: str, overrides: list[str], device: str) -> None:
    """The plain script: build the pipeline, run its stages in this process, print metrics as JSON."""
    _, config = _common.load_config(config_path, overrides)
    from pipelines.builders import crest

    metrics = _common.run_in_process(crest.build(config), config.seed, device)
    print(json.dumps({"balanced_accuracy": _common.generation_metrics(metrics), "stages": len(metrics)}))


def ray_alone_main() -> None:
    """Ray's own start in this fresh process: import, ray.init and ray.shutdown as RayExecutor calls them.

    The process then ends the way `relay run` ends (``os._exit``: no interpreter teardown), so
    the teardown of Ray's module graph (about 4 s here), which `relay run` skips, is not
    counted as Ray's and does not hide start-up costs that Relay adds.
    """
    import time

    started = time.perf_counter()
    import ray

    from orchestrator.engine.ray_session import init_kwargs

    imported = time.perf_counter()
    ray.init(**init_kwargs(None, None, include_dashboard=True))
    ready = time.perf_counter()
    ray.shutdown()
    done = time.perf_counter()
    print(
        json.dumps({"import_s": imported - started, "init_s": ready - imported, "shutdown_s": done - ready}), flush=True
    )
    os._exit(0)


def ray_start(repeats: int) -> dict[str, Any]:
    """Median wall of a whole fresh process that only starts and stops Ray, and its parts."""
    walls, parts = [], []
    command = [sys.executable, __file__, "--ray-alone"]
    for _ in range(max(1, repeats)):
        elapsed, done = _common.timed(lambda: subprocess.run(command, capture_output=True, text=True, cwd=_common.ROOT))
        if done.returncode != 0:
            raise RuntimeError(f"ray start failed:\n{done.stderr[-3000:]}")
        walls.append(elapsed)
        parts.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "process_s": _common.median(walls),
        **{key: _common.median([p[key] for p in parts]) for key in ("import_s", "init_s", "shutdown_s")},
        "all_process_s": [round(t, 2) for t in walls],
    }


def run_plain(overrides: list[str], device: str) -> tuple[float, list[float]]:
    """(wall seconds, balanced accuracy per generation) of one plain run in a fresh process."""
    command = [sys.executable, __file__, "--plain", CONFIG, "--device", device, *overrides]
    elapsed, done = _common.timed(lambda: subprocess.run(command, capture_output=True, text=True, cwd=_common.ROOT))
    if done.returncode != 0:
        raise RuntimeError(f"plain run failed:\n{done.stderr[-3000:]}")
    return elapsed, json.loads(done.stdout.strip().splitlines()[-1])["balanced_accuracy"]


def run_relay(overrides: list[str], device: str) -> tuple[float, list[float]]:
    """(wall seconds, balanced accuracy per generation) of `relay run` in a fresh workspace (no cache hits)."""
    if device == "cuda":
        overrides = [*overrides, *(f"resources.{s}.num_gpus=1" for s in ("train", "evaluate", "pseudo_label"))]
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as workspace:
        env = {**os.environ, "RELAY_WORKSPACE": workspace}
        command = [RELAY, "run", CONFIG, *overrides]
        elapsed, done = _common.timed(
            lambda: subprocess.run(command, capture_output=True, text=True, env=env, cwd=_common.ROOT)
        )
        if done.returncode != 0:
            raise RuntimeError(f"relay run failed:\n{done.stderr[-3000:]}")
        return elapsed, stored_balanced_accuracy(Path(workspace) / "artifacts")


def stored_balanced_accuracy(artifacts: Path) -> list[float]:
    """Balanced accuracy per generation from the stages' manifests (what the run stored)."""
    found = {}
    for path in artifacts.glob("stages/*/manifest.json"):
        manifest = json.loads(path.read_text())
        if manifest["stage"].endswith("/evaluate"):
            found[manifest["stage"]] = manifest["metrics"]["balanced_accuracy"]
    return [found[name] for name in sorted(found)]


def compare(label: str, overrides: list[str], repeats: int, device: str) -> dict[str, Any]:
    """Alternate relay and plain runs (load on a shared machine drifts), check metrics, summarize."""
    relay_times, plain_times = [], []
    for _ in range(max(1, repeats)):
        t_relay, acc_relay = run_relay(overrides, device)
        t_plain, acc_plain = run_plain(overrides, device)
        relay_times.append(t_relay)
        plain_times.append(t_plain)
        check_same(label, acc_relay, acc_plain)
    _, config = _common.load_config(CONFIG, overrides)
    from pipelines.builders import crest

    stages = len(crest.build(config).stages)
    relay, plain = _common.median(relay_times), _common.median(plain_times)
    return {
        "config": label,
        "stages": stages,
        "repeats": len(relay_times),
        "relay_s": relay,
        "plain_s": plain,
        "ratio": relay / plain,
        "overhead_per_stage_s": (relay - plain) / stages,
        "relay_all_s": [round(t, 1) for t in relay_times],
        "plain_all_s": [round(t, 1) for t in plain_times],
        "balanced_accuracy": acc_relay,
    }


def check_same(label: str, relay: list[float], plain: list[float]) -> None:
    """The plain script is only a baseline if it computes the same thing."""
    if len(relay) != len(plain) or any(abs(a - b) > TOLERANCE for a, b in zip(relay, plain)):
        raise AssertionError(f"{label}: relay and plain metrics differ: {relay} vs {plain}")


def slope(short: dict[str, Any], long: dict[str, Any]) -> dict[str, Any]:
    """Marginal engine cost per extra stage and the one-off start-up cost, from two stage counts."""
    extra = (long["relay_s"] - long["plain_s"]) - (short["relay_s"] - short["plain_s"])
    per_stage = extra / (long["stages"] - short["stages"])
    startup = (short["relay_s"] - short["plain_s"]) - per_stage * short["stages"]
    return {"marginal_overhead_per_stage_s": per_stage, "startup_overhead_s": startup}


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--plain", metavar="CONFIG", help=argparse_help())
    p.add_argument("--demo-repeats", type=int, default=1, help="repetitions at demo scale (about 3 min each pair)")
    p.add_argument("--skip-demo", action="store_true", help="only the near-zero-step configs")
    p.add_argument("--ray-alone", action="store_true", help="internal: time one Ray start and stop; print JSON")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    device = _common.device_or_exit(args.device)
    if args.plain:
        plain_main(args.plain, args.overrides, device)
        return
    if args.ray_alone:
        ray_alone_main()
        return
    _, base = _common.load_config(CONFIG)
    g = base.crest.generations
    rows = [
        compare(f"near-zero steps, {g} gens", [*NEAR_ZERO], args.repeats, device),
        compare(f"near-zero steps, {2 * g} gens", [*NEAR_ZERO, f"crest.generations={2 * g}"], args.repeats, device),
    ]
    fixed = slope(rows[0], rows[1])
    ray = ray_start(args.repeats)
    fixed["ray_start_s"] = ray["process_s"]
    fixed["startup_beyond_ray_s"] = fixed["startup_overhead_s"] - ray["process_s"]
    if not args.skip_demo:
        rows.append(compare(f"demo ({base.train.steps} steps, {g} gens)", [], args.demo_repeats, device))
    columns = ["config", "stages", "repeats", "relay_s", "plain_s", "ratio", "overhead_per_stage_s"]
    _common.report(
        "overhead",
        f"relay run vs plain in-process script ({device}, median wall s)",
        rows,
        {
            "fixed_costs": fixed,
            "ray_alone": ray,
            "device": device,
            "goals": {"ratio_demo": 1.05, "per_stage_s": 0.5, "startup_beyond_ray_s": GOAL_STARTUP_BEYOND_RAY_S},
        },
        columns,
    )
    print(
        f"\nnear-zero: marginal engine cost {fixed['marginal_overhead_per_stage_s']:.2f} s/stage, "
        f"one-off start-up {fixed['startup_overhead_s']:.1f} s; metrics equal within {TOLERANCE} in every pair"
    )
    print(
        f"Ray's own start alone (fresh process: import {ray['import_s']:.1f} s, init {ray['init_s']:.1f} s, "
        f"shutdown {ray['shutdown_s']:.1f} s): {ray['process_s']:.1f} s; one-off start-up beyond it: "
        f"{fixed['startup_beyond_ray_s']:.1f} s (goal <= {GOAL_STARTUP_BEYOND_RAY_S:.0f} s)"
    )


def argparse_help() -> str:
    return "internal: run the plain in-process pipeline of CONFIG once and print its metrics as JSON"


if __name__ == "__main__":
    main()
