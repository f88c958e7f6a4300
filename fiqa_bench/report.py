"""Reporting of :func:`fiqa_sdk.eval.evaluate_scorers` results for the research harness: the
``quality.json`` / ``quality.csv`` table, the EDC figure and a markdown table
(``fiqa-bench quality``), and the figure helpers the suites share."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from fiqa_sdk.errors import MissingDependencyError
from fiqa_sdk.eval.evaluate import DEFAULT_LIMITS, ScorerEvaluation


def require_matplotlib() -> None:
    """Fail now, with the extra to install, when matplotlib is missing (not after an hour of
    scoring)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("'matplotlib' is needed for the figures but is not "
                                     "installed; install it with: pip install 'fiqa-sdk[plot]' "
                                     "(or pass --no-plot)") from exc



def write_table(result: ScorerEvaluation, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``quality.json`` (metadata + one record per scorer) and ``quality.csv``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / "quality.json"
    js.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    rows = [r.as_dict() for r in result.rows]
    cs = out_dir / "quality.csv"
    with open(cs, "w", newline="") as fh:
        cols = ["protocol", "eval_embedder"] + list(rows[0])
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({"protocol": result.meta["protocol"],
                        "eval_embedder": result.meta["eval_embedder"], **r})
    return js, cs


def write_json(result: dict, path: str | Path) -> Path:
    """Write a benchmark result as indented JSON (creating the folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only); a clear error if missing."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write (creating the folder) and close a figure; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_edc(result: ScorerEvaluation, path: str | Path, max_discard: float = 0.5,
             title: str | None = None) -> Path:
    """PNG of the FNMR-EDC of each scorer (step-wise), the pAUC limits marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 5), dpi=110)
    lim0 = result.rows[0].limits[0] if result.rows else 0.2
    ymax = 0.0
    for r in result.rows:
        x, y = r.edc.discard_fractions, r.edc.fnmr
        keep = np.searchsorted(x, max_discard, side="right") + 1  # one point past the edge
        x, y = x[:keep], y[:keep]
        if np.isfinite(y).any():
            ymax = max(ymax, float(np.nanmax(y)))
        pa = r.edc.pauc(lim0, normalized=True)
        ax.step(x, y, where="post", lw=1.4, label=f"{r.scorer} ({pa:.3f})")
    for lim in (result.rows[0].limits if result.rows else DEFAULT_LIMITS):
        ax.axvline(lim, color="grey", ls="--", lw=0.8)
        ax.text(lim, 0.99, f" pAUC limit {lim:g}", transform=ax.get_xaxis_transform(),
                va="top", ha="left", color="grey", fontsize=8)
    m = result.meta
    ax.set_xlim(0, max_discard)
    ax.set_ylim(0, ymax * 1.12 if ymax > 0 else 1.0)
    ax.set_xlabel("fraction of mated pairs discarded (lowest pair quality first)")
    ax.set_ylabel(f"FNMR at FMR {m['fmr_target']:g} (threshold {m['threshold']:.3f})")
    ax.set_title(title or f"EDC, {m['protocol']}: {m['n_mated']:,} mated / {m['n_nonmated']:,} "
                 f"non-mated pairs, comparison {m['eval_embedder']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=f"scorer (normalized pAUC@{lim0:g})", title_fontsize=8,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return save_figure(fig, path)


def markdown_table(result: ScorerEvaluation) -> str:
    """The result as a markdown table (one row per scorer)."""
    lims = result.rows[0].limits if result.rows else DEFAULT_LIMITS

    def f(x, d=3):
        return "n/a" if x is None else f"{x:.{d}f}"

    boot = any(r.bootstrap is not None for r in result.rows)
    head = ["scorer", "setting"] + [f"pAUC@{x:g} norm." for x in lims] + \
        ([f"SE@{x:g} (bootstrap)" for x in lims] if boot else []) + \
        [f"pAUC@{x:g} raw" for x in lims] + ["FNMR_0", "threshold", "mated", "non-mated"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result.rows:
        d = r.as_dict()
        cells = [r.scorer, r.setting] + [f(d[f"pauc_norm_{x:g}"]) for x in lims] + \
            ([f(d.get(f"pauc_norm_{x:g}_se")) for x in lims] if boot else []) + \
            [f(d[f"pauc_{x:g}"], 5) for x in lims] + \
            [f(d["fnmr0"], 4), f(d["threshold"], 4), f"{d['n_mated']:,}", f"{d['n_nonmated']:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
