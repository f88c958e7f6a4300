"""EDC / pAUC of distilled regressors (eDifFIQA variants, DifFIQA(R)) next to the baselines, on LFW.

One run evaluates any number of regressor weights files side by side, e.g. the shipped scorers
and the eps / theta ablation (eDifFIQA paper, Table 10), with the same detections, embeddings,
decision thresholds and caches as ``fiqa-bench quality``. Regressors distilled with the same
``--cut`` share one pass of the frozen MobileFaceNet front per batch
(:class:`fiqa_bench.stem.SharedStem`): the scores are the scorers' own (tested), the
cost is one stem pass plus one tail per regressor.

    fiqa-bench run regressors_lfw \\
        --regressor ediffiqa=fiqa_sdk/weights/ediffiqa_mbf_x3.safetensors \\
        --regressor "eps=0.1"=runs/abl/eps0.1/ediffiqa_mbf.safetensors \\
        --protocols lfw-pairs lfw-all --eval-embedders arcface dlib --out results/regressors

``--ensemble NAME=A,B,...`` adds the mean score of the named ``--regressor`` entries (e.g.
three training seeds of one setting), scored as one ``RegressorEnsemble`` like the shipped
``ediffiqa`` (measured in docs/benchmarks.md "Seeds and a seed ensemble").

``--diffiqa PATH`` adds the DifFIQA teacher (expensive: ~0.4 s per image per repeat here).
Writes ``OUT/<protocol>-<embedder>.json`` and prints one Markdown table. Without
``--regressor`` the three shipped regressors are evaluated.

``--quick`` (the CI smoke test; about a minute from a cold cache): lfw-pairs only, the first
10 mated + 10 non-mated pairs of each fold (200 pairs, ~390 images; the same
subset as `fiqa-bench alignment --quick`), baselines random, inter-eye and
embedding-norm. Its numbers are far too noisy to compare scorers; it checks the plumbing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..harness import experiment


def ensemble_scorer(name: str, members: list, stem=None):
    """The mean quality of ``members`` (single-regressor ``RegressorScorer`` s of one recipe, e.g.
    training seeds) as one :class:`RegressorEnsemble` scorer: the shipped code path. Raises
    ``InvalidArgumentError`` / ``WeightsError`` for members that cannot form one."""
    from fiqa_sdk.quality.ediffiqa import RegressorEnsemble, RegressorScorer

    from ..stem import StemRegressorScorer

    ens = RegressorEnsemble.from_regressors([(m.model, m.meta) for m in members],
                                            [m.name for m in members])
    if stem is not None and stem.matches(ens):
        return StemRegressorScorer(ens, stem, name=name)
    return RegressorScorer(ens, name=name)


#: ``--quick``: 200 lfw-pairs pairs (``protocols.QUICK_PAIRS_PER_FOLD``), three baselines, two
#: threads (a CI machine's two cores)
QUICK = {"protocols": ["lfw-pairs"], "baselines": ["random", "inter-eye", "embedding-norm"],
         "threads": 2}


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--regressor", action="append", default=[], metavar="NAME=PATH",
                    help="a regressor weights file and the name to show it under (repeatable)")
    ap.add_argument("--baselines", nargs="*",
                    default=["random", "det-score", "inter-eye", "sharpness", "embedding-norm",
                             "flip-consistency"])
    ap.add_argument("--ensemble", action="append", default=[], metavar="NAME=A,B,...",
                    help="also the mean score of the named --regressor entries (repeatable)")
    ap.add_argument("--diffiqa", default=None, help="DifFIQA denoiser weights (adds the teacher)")
    ap.add_argument("--diffiqa-n", type=int, default=1)
    ap.add_argument("--diffiqa-fast", action="store_true")
    ap.add_argument("--protocols", nargs="+", default=["lfw-pairs", "lfw-all"],
                    choices=["lfw-pairs", "lfw-all", "lfw-xq", "lfw-xq-pairs"])
    ap.add_argument("--eval-embedders", nargs="+", default=["arcface"])
    ap.add_argument("--cut", type=int, default=15, help="shared-stem cut of the regressors")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lfw", default=None, help="LFW root (default $FIQA_LFW)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="cache folder (default $FIQA_CACHE/lfw)")


@experiment("regressors_lfw", "EDC / pAUC of distilled regressors next to the "
            "baselines on LFW",
            arguments=arguments, quick=QUICK, default_out="results/regressors")
def run(args, ctx) -> dict:
    """One quality-benchmark result per protocol and comparison model (keys
    ``PROTOCOL-EMBEDDER``); ``OUT/tables.md`` holds their Markdown tables.

    Raises
    ------
    InvalidArgumentError
        For a malformed ``--regressor`` or ``--ensemble``.
    """
    import torch

    import fiqa_sdk as fq
    from fiqa_sdk.errors import InvalidArgumentError, WeightsError
    from fiqa_sdk.eval import evaluate as bench, protocols
    from fiqa_sdk.eval.features import default_cache_dir
    from fiqa_sdk.quality.ediffiqa import RegressorScorer, shipped_weights

    from ..report import markdown_table
    from ..stem import SharedStem, StemRegressorScorer

    torch.set_num_threads(args.threads)
    stem = SharedStem(args.cut)
    scorers: list = []
    if not args.regressor:
        args.regressor = [f"{m}={shipped_weights(m)}" for m in ("ediffiqa", "diffiqa-r",
                                                              "ediffiqa-free")
                          if shipped_weights(m) is not None]
    for item in args.regressor:
        name, sep, path = item.rpartition("=")  # names may contain "=", paths do not
        if not sep:
            raise InvalidArgumentError(f"--regressor takes NAME=PATH, got {item!r}")
        try:
            scorers.append(StemRegressorScorer(path, stem, name=name))
        except InvalidArgumentError:  # another cut: score it whole
            scorers.append(RegressorScorer(path, name=name))
    by_name = {s.name: s for s in scorers}
    for item in args.ensemble:
        name, sep, members = item.rpartition("=")
        names = [m for m in members.split(",") if m]
        if not sep or len(names) < 2 or any(m not in by_name for m in names):
            raise InvalidArgumentError(
                f"--ensemble takes NAME=A,B,... over at least two --regressor names "
                f"({', '.join(by_name)}), got {item!r}")
        try:
            scorers.append(ensemble_scorer(name, [by_name[m] for m in names], stem))
        except (InvalidArgumentError, WeightsError) as exc:
            raise InvalidArgumentError(f"--ensemble {name}: {exc}")
    arc = fq.create_embedder("arcface", threads=args.threads)
    if args.diffiqa:
        scorers.append(fq.create_scorer("diffiqa", weights=args.diffiqa, embedder=arc,
                                        n=args.diffiqa_n, fast=args.diffiqa_fast))
    scorers += list(args.baselines)
    cache = args.cache or default_cache_dir() / "lfw"
    lfw = args.lfw or protocols.default_lfw_root()
    tables, results = [], {}
    for proto_name in args.protocols:
        if proto_name == "lfw-pairs":
            proto = protocols.read_lfw_pairs(lfw)
            if args.quick:
                proto = protocols.pairs_subset(proto, protocols.QUICK_PAIRS_PER_FOLD)
        elif proto_name == "lfw-all":
            proto = protocols.lfw_all_vs_all(lfw)
        else:
            from .. import xq

            root = xq.build_lfw_xq(lfw, default_cache_dir())
            proto = (protocols.read_lfw_pairs(root) if proto_name == "lfw-xq-pairs"
                     else protocols.lfw_all_vs_all(root))
        for ev in args.eval_embedders:
            t0 = time.time()
            res = bench.evaluate_scorers(
                proto, scorers=scorers, eval_embedder=ev, quality_embedder=arc,
                face_policy="central", cache_dir=cache, protocol_name=proto_name,
                log=lambda m: print(f"[{proto_name}/{ev}] {m}", file=sys.stderr, flush=True))
            res.meta["seconds"]["total"] = round(time.time() - t0, 1)
            results[f"{proto_name}-{ev}"] = res.as_dict()
            tables.append(f"### {proto_name}, comparisons by {ev} "
                          f"(FNMR_0 {res.meta['fnmr0']:.5f})\n\n" + markdown_table(res))
    text = "\n\n".join(tables)
    md = ctx.artifact("tables.md")
    if md is not None:
        md.write_text(text + "\n")
    print(text)
    return results

