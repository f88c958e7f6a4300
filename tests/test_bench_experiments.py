"""The research harness (fiqa_bench): its registry, command line and result files, and a smoke
run of every registered experiment.

Each smoke test runs ``fiqa-bench run NAME --quick --out TMP`` once in this process
(``conftest.quick_run``: the environment of conftest, ``$FIQA_LFW``, ``$FIQA_CELEBA`` and the
session's temporary ``$FIQA_CACHE``, so LFW detections computed by one run are reused by the
next; models and libraries are loaded once, not in a fresh process per experiment) and checks
that it exits 0 and writes a result file with the harness's fields. What the numbers must
satisfy is checked by tests/test_benchmarks_quick.py, test_benchmarks_smoke.py,
test_docs_numbers.py and test_docs_scripts.py, on this same run wherever they check a plain
``--quick`` run (other options: runs of their own). The console entry itself (``python -m fiqa_bench``, a fresh process that imports
every experiment module) is run by test_list_and_usage and test_run_in_a_fresh_process.
Experiments that need what a CI machine does not have declare ``requires=`` and are skipped
with that reason.
"""

from __future__ import annotations

import argparse
import configparser
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import quick_run
from fiqa_bench import harness
from fiqa_sdk.errors import InvalidArgumentError

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = harness.load_experiments()

#: Experiments whose ``--quick`` run takes well over 30 s on a busy 2-core machine, deselected by
#: ``-m "not slow"``: two eDifFIQA trainings (ediffiqa_ablation), three processes and two local
#: Ray instances (ray_filter), three ONNX exports and the int8 build of the shipped regressor
#: (regressor_backends). Their code paths run in the CI set through the in-process tests
#: (test_benchmarks_quick.py::test_ediffiqa_ablation_quick, test_docs_scripts.py's profiler
#: run, test_docs_numbers.py's --bound-only run).
SLOW = {"ediffiqa_ablation", "ray_filter", "regressor_backends"}

HARNESS_FIELDS = {"experiment", "description", "command", "date", "versions", "machine", "quick",
                  "arguments", "seconds", "exit_code", "files", "results"}


def bench(*args: str, cwd: Path, timeout: float = 900,
          cache: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m fiqa_bench ARGS`` in a fresh process that imports this checkout (``cache``:
    its ``$FIQA_CACHE``, default the session's)."""
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                         if p)}
    if cache is not None:
        env["FIQA_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "fiqa_bench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _smoke_params():
    for name, exp in EXPERIMENTS.items():
        marks = [pytest.mark.slow] if name in SLOW else []
        if exp.requires:
            marks.append(pytest.mark.skip(reason=f"{name} needs {exp.requires}"))
        yield pytest.param(name, marks=marks, id=name)


def check_record(rec: dict, name: str, out: Path) -> None:
    """The harness fields of the result file of ``fiqa-bench run NAME --quick --out OUT``."""
    import fiqa_sdk

    assert HARNESS_FIELDS <= set(rec)
    assert rec["experiment"] == name and rec["quick"] is True and rec["exit_code"] == 0
    assert rec["command"] == f"fiqa-bench run {name} --quick --out {out}"
    assert rec["description"] == EXPERIMENTS[name].description
    assert set(rec["versions"]) == {"fiqa_sdk", "numpy", "torch", "onnxruntime"}
    assert rec["versions"]["fiqa_sdk"] == fiqa_sdk.__version__
    assert rec["machine"]["cpu_count"] >= 1
    assert dt.datetime.fromisoformat(rec["date"]).tzinfo is not None
    assert rec["arguments"]["quick"] is True and rec["seconds"] >= 0
    assert isinstance(rec["results"], dict) and rec["results"]
    assert all(Path(f).is_file() for f in rec["files"])


@pytest.mark.parametrize("name", list(_smoke_params()))
def test_quick_run(name):
    run = quick_run(name)
    assert run.exit_code == 0, f"{name} --quick failed:\n{run.stderr[-4000:]}"
    check_record(run.record, name, run.out)


def test_run_in_a_fresh_process(tmp_path):
    """``python -m fiqa_bench run NAME --quick`` as a user runs it: a fresh process, the result
    file written."""
    out = tmp_path / "out"
    proc = bench("run", "bench_edc", "--quick", "--out", str(out), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    check_record(json.loads((out / "bench_edc.json").read_text()), "bench_edc", out)
    assert "FNMR-EDC + FMR-EDC" in proc.stdout


# --------------------------------------------------------------------------------------------
# Registry and command line
# --------------------------------------------------------------------------------------------


def test_registry_is_one_module_per_experiment():
    files = sorted(p.stem for p in (REPO / "fiqa_bench" / "experiments").glob("*.py")
                   if not p.stem.startswith("_"))
    assert sorted(EXPERIMENTS) == files
    for name, exp in EXPERIMENTS.items():
        assert exp.run.__module__ == f"fiqa_bench.experiments.{name}"
        assert exp.description and "\n" not in exp.description and len(exp.description) < 100
        assert exp.doc.strip(), f"{name}: the module docstring is the --help text"
    assert [n for n, e in EXPERIMENTS.items() if e.requires] == ["ensemble_held_out"]


def test_quick_parameters_name_options():
    """Every mapping of ``--quick`` parameters names options of its experiment."""
    for name, exp in EXPERIMENTS.items():
        dests = {a.dest for a in harness.build_parser(exp)._actions}
        if isinstance(exp.quick, dict):
            assert set(exp.quick) <= dests, name


def test_list_and_usage(tmp_path, capsys):
    proc = bench("list", cwd=tmp_path, timeout=300)  # a fresh process imports every experiment
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(EXPERIMENTS)
    assert any("[requires " in line for line in lines)
    capsys.readouterr()
    assert harness.main(["run"]) == 2
    assert capsys.readouterr().err.startswith("usage: fiqa-bench run NAME")
    assert harness.main(["run", "no_such_experiment"]) == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_console_script_declared():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    scripts = cfg["options.entry_points"]["console_scripts"]
    assert "fiqa-bench = fiqa_bench.harness:main" in scripts
    assert "fiqa = fiqa_sdk.cli:main" in scripts
    assert "fiqa_bench" in cfg["options.packages.find"]["include"]


# --------------------------------------------------------------------------------------------
# Harness behaviour, on a throw-away experiment
# --------------------------------------------------------------------------------------------


@pytest.fixture
def toy():
    """A registered experiment ``_toy`` (removed again) that echoes its arguments."""

    def arguments(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--n", type=int, default=100)
        ap.add_argument("--seed", type=int, default=0)

    def run(args, ctx):
        path = ctx.artifact("table.md")
        if path is not None:
            path.write_text("| n |\n")
        ctx.exit_code = 3 if args.seed == 3 else 0
        return {"n": args.n, "seed": args.seed, "quick": ctx.quick}

    harness.experiment("_toy", "a test experiment", arguments=arguments,
                       quick={"n": 2})(run)
    yield harness.REGISTRY["_toy"]
    del harness.REGISTRY["_toy"]


def test_quick_merge_explicit_options_win(toy):
    assert harness.parse_arguments(toy, []).n == 100
    assert harness.parse_arguments(toy, ["--quick"]).n == 2
    assert harness.parse_arguments(toy, ["--quick", "--n", "7"]).n == 7


def test_result_file_and_folder(toy, tmp_path, capsys):
    assert harness.main(["run", "_toy", "--quick", "--out", str(tmp_path / "r.json")]) == 0
    rec = json.loads((tmp_path / "r.json").read_text())
    assert rec["results"] == {"n": 2, "seed": 0, "quick": True}
    assert rec["command"] == f"fiqa-bench run _toy --quick --out {tmp_path / 'r.json'}"
    assert rec["files"] == [str(tmp_path / "table.md")]
    # a folder: NAME.json and the extra files inside it
    assert harness.main(["run", "_toy", "--seed", "3", "--out", str(tmp_path / "d")]) == 3
    rec = json.loads((tmp_path / "d" / "_toy.json").read_text())
    assert rec["exit_code"] == 3 and (tmp_path / "d" / "table.md").is_file()
    assert harness.read_results(tmp_path / "d") == {"n": 100, "seed": 3, "quick": False}
    # no --out: nothing written
    assert harness.run_experiment("_toy", [])["results"]["n"] == 100


def test_registration_errors(toy):
    with pytest.raises(InvalidArgumentError, match="registered twice"):
        harness.experiment("_toy", "another")(lambda args, ctx: {})
    with pytest.raises(InvalidArgumentError, match="one non-empty line"):
        harness.experiment("_x", "two\nlines")
    bad = harness.Experiment(name="_bad", description="d", run=toy.run, quick={"nope": 1})
    with pytest.raises(InvalidArgumentError, match="unknown options"):
        harness.parse_arguments(bad, ["--quick"])


def test_jsonable():
    import math

    import numpy as np

    out = harness.jsonable({"a": np.float32(1.5), "b": np.arange(2), "c": (Path("x"),),
                            "d": np.float64("nan"), 3: {1}})
    assert math.isnan(out.pop("d"))
    assert out == {"a": 1.5, "b": [0, 1], "c": ["x"], "3": [1]}
    assert json.dumps(out)


def test_plot_helper(toy, tmp_path):
    pytest.importorskip("matplotlib")
    ctx = harness.RunContext(name="_toy", argv=[], command="", out_dir=tmp_path)
    path = harness.save_plot(ctx, "edc.png", lambda ax: ax.plot([0, 1], [1, 0]))
    assert path == tmp_path / "edc.png" and path.stat().st_size > 0
    assert harness.save_plot(harness.RunContext(name="_toy", argv=[], command=""), "x.png",
                             lambda ax: None) is None
