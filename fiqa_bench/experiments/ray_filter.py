"""Ray Data (fiqa_sdk.distributed.ray_filter) against single-process gate.filter on LFW.

    FIQA_CACHE=/work/cache fiqa-bench run ray_filter --out results/ray_filter.json \\
        --md results/ray_filter.md                 # all 13,233 LFW images, 1 and 2 actors
    fiqa-bench run ray_filter --quick        # smoke run (CI): 24 images, shards of 8

Measures, in one run and on the same images (LFW ``images/*/*.jpg``, sorted as ``ray_filter``
lists a folder tree): single-process ``gate.filter(paths, discard=...)`` with each of
``--single-threads`` (0: the libraries' defaults, one thread per core), then ``ray_filter`` with
each of ``--actors`` actors (``--threads-per-actor`` threads each) on a local Ray instance of
``--num-cpus`` CPUs. Each configuration runs in its own Python process, so that the driver's
peak resident memory (``ru_maxrss``) is that of the configuration alone; the Ray driver gets
the gate configuration as a dict and never builds a gate. Reported: images/s (median of
``--repeats``; for Ray, of the whole ``ray_filter`` call after ``ray.init``: actor start-up,
scoring, the decision pass and the final Parquet), the scoring stage alone, scaling efficiency
(``ips(N actors) / (N x ips(1 actor))``), the ratio to the best single-process run, the driver's
peak RSS, and whether Ray's scores and kept set equal gate.filter's. Every Ray run starts from
an empty output (no resumption). Timings are only meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fiqa_sdk.errors import EvaluationError

from ..harness import experiment

#: ``--quick`` defaults (options given explicitly still win)
QUICK = {"images": 24, "shard_size": 8, "repeats": 1, "actors": [1, 2], "single_threads": [0]}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _one(spec: dict) -> dict:
    """One measurement in this (fresh) process; ``spec`` from the parent."""
    import pyarrow.parquet as pq

    paths = Path(spec["paths"]).read_text().splitlines()
    cfg = spec["config"]
    if spec["kind"] == "single":
        if spec["threads"]:
            os.environ["FIQA_NUM_THREADS"] = str(spec["threads"])
            import torch

            torch.set_num_threads(spec["threads"])
        import fiqa_sdk as fq
        from fiqa_sdk.distributed import build_gate

        gate = build_gate(cfg)
        gate.filter(paths[:4], discard=0.0)  # warm-up: first calls allocate
        t0 = time.perf_counter()
        res = gate.filter(paths, discard=spec["discard"])
        secs = time.perf_counter() - t0
        scores = [r.score for r in res.reports]
        kept = res.kept
        extra = {"fiqa_sdk": fq.__version__}
    else:
        import ray

        from fiqa_sdk.distributed import ray_filter

        t0 = time.perf_counter()
        ray.init(num_cpus=spec["num_cpus"], include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = ray_filter(paths, spec["out"], gate=cfg, discard=spec["discard"],
                       num_actors=spec["actors"], threads_per_actor=spec["threads"] or None,
                       shard_size=spec["shard_size"], overwrite=True, progress=False)
        secs = time.perf_counter() - t0
        t = pq.read_table(spec["out"], columns=["score", "kept"])
        scores = t.column("score").to_pylist()
        kept = [i for i, k in enumerate(t.column("kept").to_pylist()) if k]
        extra = {"ray_init_s": round(init_s, 2), "scoring_s": r.scoring_seconds,
                 "scoring_images_per_s": r.images_per_s, "shards": r.shards}
        ray.shutdown()
    Path(spec["scores"]).write_text(json.dumps({"scores": scores, "kept": kept}))
    return {"seconds": round(secs, 3), "images_per_s": round(len(paths) / secs, 2),
            "driver_peak_rss_mb": round(_peak_rss_mb(), 1), **extra}


def _run_child(spec: dict, workdir: Path) -> dict:
    f = workdir / f"spec-{time.monotonic_ns()}.json"
    f.write_text(json.dumps(spec))
    # the child imports the same fiqa_bench and fiqa_sdk as this process
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-m", __name__, str(f)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise EvaluationError(f"measurement {spec['kind']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(res: dict) -> str:
    rows = res["rows"]
    lines = [f"{res['images']} LFW images, discard {res['discard']}, {res['cpus']} CPUs "
             f"(`{res['command']}`); median of {res['repeats']} run(s)", "",
             "| engine | actors x threads | images/s | scoring images/s | vs 1 actor | "
             "scaling efficiency | vs best single process | driver peak RSS (MB) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def f(k, fmt="{:.2f}"):
            return fmt.format(r[k]) if r.get(k) is not None else "-"
        lines.append(f"| {r['engine']} | {r['layout']} | {r['images_per_s']:.1f} | "
                     f"{f('scoring_images_per_s', '{:.1f}')} | {f('speedup_vs_1_actor')}x | "
                     f"{f('scaling_efficiency')} | {f('vs_best_single')}x | "
                     f"{r['driver_peak_rss_mb']:.0f} |")
    eq = res["equal_to_gate_filter"]
    lines += ["", f"Ray vs gate.filter: max |score difference| {eq['max_abs_score_diff']:.2g}, "
                  f"same unscored items: {eq['same_unscored']}, same kept set: {eq['same_kept']}"]
    return "\n".join(lines)


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--lfw", default=None,
                    help="LFW root (default $FIQA_LFW)")
    ap.add_argument("--images", type=int, default=None, help="first N images only (default all)")
    ap.add_argument("--discard", type=float, default=0.2)
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads-per-actor", type=int, default=1)
    ap.add_argument("--single-threads", type=int, nargs="+", default=[0, 1],
                    help="threads of the single-process runs (0: the libraries' defaults)")
    ap.add_argument("--num-cpus", type=int, default=None,
                    help="CPUs of the local Ray instance (default: os.cpu_count())")
    ap.add_argument("--shard-size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--scorer", default=None, help="gate scorer (default: the gate's default)")
    ap.add_argument("--md", default=None, help="markdown table (to paste into docs)")


@experiment("ray_filter", "Ray Data filter against single-process gate.filter on "
            "LFW",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """The rows of the table, the scaling targets and the equality check; ``--md`` also writes
    the table. The exit status is 1 when Ray's kept or unscored set differs from gate.filter's."""
    import fiqa_sdk as fq
    from fiqa_sdk.distributed import list_images
    from fiqa_sdk.eval.protocols import default_lfw_root

    root = Path(args.lfw) if args.lfw else default_lfw_root()
    paths = list_images(root / "images")
    if args.images:
        paths = paths[:args.images]
    gate = fq.QualityGate(**({"scorer": args.scorer} if args.scorer else {}))
    cfg = gate.config()
    del gate
    cpus = args.num_cpus or os.cpu_count() or 1
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="fiqa-ray-bench-") as tmp:
        work = Path(tmp)
        (work / "paths.txt").write_text("\n".join(paths) + "\n")
        base = {"paths": str(work / "paths.txt"), "config": cfg, "discard": args.discard,
                "shard_size": args.shard_size, "num_cpus": cpus}
        configs = [("single", t) for t in args.single_threads] + [("ray", a) for a in args.actors]
        runs: dict = {c: [] for c in configs}
        for rep in range(args.repeats):  # interleaved, so machine noise hits all alike
            for kind, k in configs:
                spec = {**base, "kind": kind, "scores": str(work / f"{kind}-{k}.json")}
                if kind == "single":
                    spec["threads"] = k
                else:
                    spec.update(actors=k, threads=args.threads_per_actor,
                                out=str(work / f"ray-{k}.parquet"))
                r = _run_child(spec, work)
                runs[(kind, k)].append(r)
                print(f"# {kind} {k} (repeat {rep + 1}): {r}", file=sys.stderr, flush=True)
        for (kind, k), rs in runs.items():
            med = {key: statistics.median(r[key] for r in rs)
                   for key in rs[0] if isinstance(rs[0][key], (int, float))}
            row = {"engine": "gate.filter" if kind == "single" else "ray_filter",
                   "layout": (f"1 process x {k or 'default'} threads" if kind == "single"
                              else f"{k} x {args.threads_per_actor}"),
                   "kind": kind, "n": k, **med}
            rows.append(row)
            results[(kind, k)] = json.loads((work / f"{kind}-{k}.json").read_text())
    best_single = max(r["images_per_s"] for r in rows if r["kind"] == "single")
    one = next((r for r in rows if r["kind"] == "ray" and r["n"] == 1), None)
    for r in rows:
        if r["kind"] == "ray":
            r["vs_best_single"] = round(r["images_per_s"] / best_single, 3)
            if one:
                r["speedup_vs_1_actor"] = round(r["images_per_s"] / one["images_per_s"], 3)
                r["scaling_efficiency"] = round(r["speedup_vs_1_actor"] / r["n"], 3)
    ref = results[next(c for c in results if c[0] == "single")]
    diffs, same_unscored, same_kept = [0.0], True, True
    for c, got in results.items():
        if c[0] != "ray":
            continue
        same_unscored &= [s is None for s in got["scores"]] == [s is None for s in ref["scores"]]
        diffs += [abs(a - b) for a, b in zip(got["scores"], ref["scores"])
                  if a is not None and b is not None]
        same_kept &= got["kept"] == ref["kept"]
    res = {"benchmark": "ray_filter", "command": ctx.command, "images": len(paths), "discard": args.discard,
           "cpus": cpus, "repeats": args.repeats, "quick": bool(args.quick),
           "gate": cfg, "rows": rows,
           "targets": {"2_actors_vs_1": next((r.get("speedup_vs_1_actor") for r in rows
                                              if r["kind"] == "ray" and r["n"] == 2), None),
                       "2_actors_vs_best_single": next((r.get("vs_best_single") for r in rows
                                                        if r["kind"] == "ray" and r["n"] == 2),
                                                       None)},
           "equal_to_gate_filter": {"max_abs_score_diff": max(diffs),
                                    "same_unscored": same_unscored, "same_kept": same_kept}}
    table = markdown(res)
    print(table)
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(table + "\n")
    ctx.exit_code = 0 if same_kept and same_unscored else 1
    return res


if __name__ == "__main__":  # one measurement in a fresh process (see _run_child)
    print(json.dumps(_one(json.loads(Path(sys.argv[1]).read_text()))))

