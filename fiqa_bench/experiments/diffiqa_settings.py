"""DifFIQA inference settings (t, n, one-step vs DDIM chain, which eq. 7 terms) chosen without LFW.

Scores the held-out celeba-subset identities (the 10 % that ``fiqa train ediffiqa`` never trains
on, ``fiqa_sdk.train.distill.split_identities``) with the DifFIQA denoiser under several settings
and reports the ISO/IEC 29794-1 EDC pAUC of each (``HeldOutVerification``: all-vs-all ArcFace
comparisons of those faces, threshold at FMR 1e-3), next to embedding-norm and flip-consistency
on the same faces. One perturbation per setting gives every term of eq. 7, so the table also
lists the pAUC of subsets of the terms:

- ``eq7``: mean of the five cosines (the paper's quality; the ``diffiqa`` scorer),
- ``no-flip``: mean of cos(e(x), e(x_t)) and cos(e(x), e(x_hat)) (flip off),
- ``restored``: cos(e(x), e(x_hat)) and its mirror counterpart only,
- ``noisy``: cos(e(x), e(x_t)) and its mirror counterpart only,
- ``flip``: cos(e(x), e(x^f)) alone (= flip-consistency).

    fiqa-bench run diffiqa_settings --settings chain:5:1 fast:5:2 fast:20:2 fast:50:2 \\
        --out runs/diffiqa-settings

A setting is ``MODE:T:N`` with MODE ``chain`` (DDIM eta = 1 over the official time pairs) or
``fast`` (one x0 prediction). The denoiser was trained on all celeba-subset faces, the held-out
identities included (only the regressors hold them out), so this picks settings on faces the
denoiser has seen; the pick is then checked on LFW:

    fiqa-bench run diffiqa_settings --lfw-pairs --eval-embedders arcface dlib \
        --settings chain:5:1 fast:20:2 --out runs/diffiqa-settings-lfw

does the same decomposition on LFW ``pairs.txt`` (7,701 images; RetinaFace central face, the
detections and comparison embeddings shared with ``fiqa-bench quality``'s cache
``$FIQA_CACHE/lfw``), one threshold at FMR 1e-3 per comparison model.

``--quick`` (the CI smoke run, well under a minute from a cold cache) runs the same code on a
tiny set: the first 6 held-out identities (the split of the full run, computed on the listed
images) with at least 6 images, 6 images each, copied to ``OUT/quick-data`` and aligned into
their own cache folder; settings ``chain:2:1 fast:5:1``; 10 random seeds. With ``--lfw-pairs``
it uses the first 3 mated + 3 non-mated pairs of each fold (60 pairs, 96 images, all among the
images of the other ``--quick`` benchmarks; about a minute). Its numbers are far too noisy to
pick settings (on LFW, FNMR_0 with ArcFace is 0: normalized pAUC undefined); it checks the
plumbing:

    fiqa-bench run diffiqa_settings --quick --out /tmp/diffiqa-settings-quick
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from fiqa_sdk.errors import EvaluationError, InvalidArgumentError

from ..harness import experiment

TERMS = ("eq7", "no-flip", "restored", "noisy", "flip")

#: ``--quick``: held-out identities and images per identity, LFW pairs per fold and class
#: (``--lfw-pairs``), and the option defaults
QUICK_IDENTITIES, QUICK_FACES, QUICK_LFW_PAIRS_PER_FOLD = 6, 6, 3
QUICK = {"settings": ["chain:2:1", "fast:5:1"], "random_seeds": 10, "threads": 2}


def parse_setting(text: str) -> tuple[str, int, int]:
    """``"fast:20:2"`` -> ``("fast", 20, 2)``; InvalidArgumentError (a ValueError) on anything
    else."""
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in ("chain", "fast"):
        raise InvalidArgumentError(f"setting {text!r}: expected MODE:T:N with MODE chain or fast")
    mode, t, n = parts[0], int(parts[1]), int(parts[2])
    if not 1 <= t < 1000 or n < 1:
        raise InvalidArgumentError(f"setting {text!r}: need 1 <= T < 1000 and N >= 1")
    return mode, t, n


def term_cosines(scorer, crops: np.ndarray, chunk: int = 10) -> dict[str, np.ndarray]:
    """Per-face cosines of eq. 7, each averaged over the n repeats: ``t``, ``hat`` (the face),
    ``ft``, ``fhat`` (its mirror) and ``f`` (the mirror itself). ``scorer.flip`` must be on."""
    n = scorer.n
    out: dict[str, list] = {k: [] for k in ("t", "hat", "ft", "fhat", "f")}
    for s in range(0, len(crops), chunk):
        c = crops[s : s + chunk]
        x_t, x_hat = scorer.perturb(c)
        m = len(c)
        emb = scorer.embedder.embed(np.concatenate(
            [c, np.ascontiguousarray(c[:, :, ::-1]), x_t.reshape(-1, 112, 112, 3),
             x_hat.reshape(-1, 112, 112, 3)]))
        e_x, e_f = emb[:m], emb[m : 2 * m]
        k = scorer.copies
        e_t = emb[2 * m : 2 * m + m * k].reshape(m, k, -1)
        e_h = emb[2 * m + m * k :].reshape(m, k, -1)
        cos_t = np.einsum("cd,ckd->ck", e_x, e_t)
        cos_h = np.einsum("cd,ckd->ck", e_x, e_h)
        out["t"].append(cos_t[:, :n].mean(1))
        out["hat"].append(cos_h[:, :n].mean(1))
        out["ft"].append(cos_t[:, n:].mean(1))
        out["fhat"].append(cos_h[:, n:].mean(1))
        out["f"].append(np.einsum("cd,cd->c", e_x, e_f))
    return {k: np.concatenate(v) for k, v in out.items()}


def combine(cos: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The qualities of :data:`TERMS` from :func:`term_cosines`' output."""
    return {
        "eq7": np.mean([cos["t"], cos["hat"], cos["f"], cos["ft"], cos["fhat"]], axis=0),
        "no-flip": np.mean([cos["t"], cos["hat"]], axis=0),
        "restored": np.mean([cos["hat"], cos["fhat"]], axis=0),
        "noisy": np.mean([cos["t"], cos["ft"]], axis=0),
        "flip": cos["f"],
    }


class _Evaluation:
    """pAUC of per-face qualities on one set of faces: ``pauc(q) -> {model: {"pauc_0.2": ..}}``;
    ``paired_se(qa, qb)``, where defined: the leave-one-identity-out jackknife standard error of
    ``pauc(qa) - pauc(qb)`` (the same comparisons, so scorer noise that is shared cancels)."""

    def __init__(self, crops: np.ndarray, evaluate, describe: dict, references: dict,
                 paired_se=None, reference_qualities: dict | None = None):
        self.crops, self.pauc, self.describe, self.references = crops, evaluate, describe, references
        self.paired_se, self.reference_qualities = paired_se, reference_qualities or {}


def jackknife_se(emb: np.ndarray, ids: np.ndarray, qa: np.ndarray, qb: np.ndarray) -> dict:
    """Leave-one-identity-out jackknife standard error of the normalized-pAUC difference
    ``qa - qb`` on :class:`HeldOutVerification` (threshold recomputed on each subset)."""
    from fiqa_sdk.train.distill import HeldOutVerification

    diffs = []
    for i in np.unique(ids):
        keep = ids != i
        ver = HeldOutVerification(emb[keep], ids[keep])
        a, b = ver.pauc(qa[keep]), ver.pauc(qb[keep])
        diffs.append({k: a[k] - b[k] for k in a})
    n = len(diffs)
    return {k: float(np.sqrt((n - 1) / n * np.sum((np.array([d[k] for d in diffs])
                                                    - np.mean([d[k] for d in diffs])) ** 2)))
            for k in diffs[0]}


def quick_held_out_folder(root: Path, dest: Path, fraction: float, seed: int,
                          identities: int = QUICK_IDENTITIES, faces: int = QUICK_FACES) -> Path:
    """``--quick``: a training-set folder (one sub-folder per identity) under ``dest`` with
    copies of ``faces`` images each of the first ``identities`` held-out identities (the split
    of the full run, on the listed images) that have at least ``faces`` images."""
    from fiqa_sdk.train.data import list_training_images, subset_folder
    from fiqa_sdk.train.distill import split_identities

    rows, _ = list_training_images(root)
    held = split_identities(np.array([ident for _, _, ident in rows]), fraction, seed)
    return subset_folder(root, dest, identities, faces, among=held, min_identities=2)


def held_out_celeba(args, out: Path) -> _Evaluation:
    from fiqa_sdk.embed import create_embedder
    from fiqa_sdk.train.data import build_aligned_cache, celeba_root
    from fiqa_sdk.train.distill import HeldOutVerification, split_identities

    root = celeba_root(args.data)
    if args.quick:  # held-out identities only: every face of the tiny set is evaluated
        root = quick_held_out_folder(root, out / "quick-data", args.val_fraction, args.seed)
    data = build_aligned_cache(root, cache=args.cache)
    ids = np.asarray(data.identities)
    idx = (np.arange(len(ids)) if args.quick
           else np.flatnonzero(split_identities(ids, args.val_fraction, args.seed)))
    if args.limit:
        idx = idx[: args.limit]
    crops = np.asarray(data.faces)[idx]
    emb_raw = create_embedder("arcface").embed_raw(crops)
    ver = HeldOutVerification(emb_raw, ids[idx])
    norms = np.linalg.norm(emb_raw, axis=1)
    ref = {"embedding-norm": {"arcface": ver.pauc(norms)}}
    return _Evaluation(crops, lambda q: {"arcface": ver.pauc(q)},
                       {"set": "held-out celeba-subset identities", "faces": int(len(idx)),
                        "arcface": ver.describe()}, ref,
                       paired_se=lambda qa, qb: {"arcface": jackknife_se(emb_raw, ids[idx], qa, qb)},
                       reference_qualities={"embedding-norm": norms})


def aligned_crops(paths: list[str], faces) -> tuple[list[np.ndarray], list[int]]:
    """ArcFace crops of every image from the cached detections ``faces`` (a ``FaceSet``); an
    image without a face uses the fallback landmarks; unreadable images are skipped."""
    from fiqa_sdk import FiqaError, align_face, load_image

    lmk = faces.landmarks.copy()
    if not faces.found.all():
        lmk[~faces.found] = faces.fallback_landmarks()
    crops, ok = [], []
    for i, path in enumerate(paths):
        try:
            img = load_image(path)
        except FiqaError:
            continue
        crops.append(align_face(img, lmk[i]))
        ok.append(i)
    return crops, ok


def lfw_pairs(args) -> _Evaluation:
    from fiqa_sdk.detect import create_detector
    from fiqa_sdk.embed import create_embedder
    from fiqa_sdk.eval import evaluate as bench, protocols
    from fiqa_sdk.eval.features import default_cache_dir, detect_all, embed_all, score_all

    proto = protocols.read_lfw_pairs(args.lfw)
    if args.quick:
        proto = protocols.pairs_subset(proto, QUICK_LFW_PAIRS_PER_FOLD)
    paths = [str(p) for p in proto.paths]
    if args.limit:
        raise InvalidArgumentError("--limit is for the held-out set only")
    cache = Path(args.cache) if args.cache else default_cache_dir() / "lfw"
    faces = detect_all(paths, create_detector("retinaface"), policy="central", cache_dir=cache)
    crops, ok = aligned_crops(paths, faces)
    if len(ok) != len(paths):
        raise EvaluationError(f"{len(paths) - len(ok)} LFW images could not be read")
    mated, nonmated = np.asarray(proto.mated_pairs), np.asarray(proto.nonmated_pairs)
    models, describe = {}, {"set": "LFW pairs.txt", "faces": len(paths)}
    for name in args.eval_embedders:
        emb = embed_all(faces, create_embedder(name), fallback=True, cache_dir=cache)
        thr = bench.threshold_at_fmr(bench.pair_scores(emb, nonmated), 1e-3)
        ms = bench.pair_scores(emb, mated)
        models[name] = (ms, thr)
        describe[name] = {"mated": len(mated), "nonmated": len(nonmated), "threshold": thr.threshold,
                          "fnmr0": float(np.mean(ms < thr.threshold))}

    def evaluate(q: np.ndarray) -> dict:
        out = {}
        for name, (ms, thr) in models.items():
            res = bench.edc_at_threshold(ms, np.asarray(q)[mated], thr, 1e-3, len(nonmated))
            out[name] = {f"pauc_{lim:g}": float(res.pauc(lim, normalized=True)) for lim in (0.2, 0.3)}
        return out

    refs = {}
    names = ["embedding-norm", "flip-consistency"]
    scorers = bench.make_scorers(names, create_embedder("arcface"))
    for name, q in zip(names, score_all(faces, scorers, fallback=True, cache_dir=cache)):
        refs[name] = evaluate(q)
    return _Evaluation(np.stack(crops), evaluate, describe, refs)


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--settings", nargs="+", default=["chain:5:1", "fast:5:2", "fast:20:2", "fast:50:2"])
    ap.add_argument("--weights", default=None, help="denoiser (default: the shipped one)")
    ap.add_argument("--data", default=None, help="celeba-subset root (default $FIQA_CELEBA)")
    ap.add_argument("--cache", default=None, help="aligned-face cache (default $FIQA_CACHE)")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0, help="identity split seed (as fiqa train)")
    ap.add_argument("--limit", type=int, default=None, help="first N held-out faces (smoke tests)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lfw-pairs", action="store_true",
                    help="evaluate on LFW pairs.txt instead of the held-out celeba identities")
    ap.add_argument("--lfw", default=None, help="LFW root (default $FIQA_LFW)")
    ap.add_argument("--random-seeds", type=int, default=200,
                    help="noise floor: pAUC of random qualities over this many seeds (default 200)")
    ap.add_argument("--eval-embedders", nargs="+", default=["arcface"],
                    help="--lfw-pairs: comparison models (default arcface; dlib: cross-model)")


@experiment("diffiqa_settings", "DifFIQA inference settings (t, n, one-step vs chain, "
            "eq. 7 terms) without LFW",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """Every setting's pAUC per eq. 7 term, next to the references; ``OUT/settings.md`` (the
    tables), ``OUT/settings.json`` (rewritten after each setting) and one ``cos_*.npz`` per
    setting (reused by a later run into the same folder).

    Raises
    ------
    InvalidArgumentError
        Without ``--out`` (a folder), or for a malformed ``--settings`` entry.
    """
    if ctx.out_dir is None:
        raise InvalidArgumentError("diffiqa_settings writes several files: give --out FOLDER")
    out = ctx.out_dir
    settings = [parse_setting(s) for s in args.settings]
    import torch

    from fiqa_sdk.quality import create_scorer

    torch.set_num_threads(args.threads)
    ev = lfw_pairs(args) if args.lfw_pairs else held_out_celeba(args, out)
    print(f"{json.dumps(ev.describe)}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    if args.random_seeds:  # the spread of random quality on the same comparisons
        draws = [ev.pauc(np.random.default_rng(k).random(len(ev.crops))) for k in range(args.random_seeds)]
        ev.references["random (mean over seeds)"] = {
            m: {key: float(np.mean([d[m][key] for d in draws])) for key in draws[0][m]} for m in draws[0]}
        ev.references["random (std over seeds)"] = {
            m: {key: float(np.std([d[m][key] for d in draws])) for key in draws[0][m]} for m in draws[0]}
    results = {"evaluation": ev.describe, "references": ev.references, "settings": {}}
    for mode, t, n in settings:
        name = f"{mode}:{t}:{n}"
        npz = out / f"cos_{'quick_' if args.quick else ''}{mode}_{t}_{n}.npz"
        scorer = create_scorer("diffiqa", weights=args.weights, t=t, n=n, fast=(mode == "fast"))
        if npz.is_file():  # a finished setting of an earlier run into the same folder
            cos = dict(np.load(npz))
            sec = float(cos.pop("s_per_face", np.nan))
        else:
            t0 = time.perf_counter()
            cos = term_cosines(scorer, ev.crops)
            sec = (time.perf_counter() - t0) / len(ev.crops)
            np.savez(npz, s_per_face=sec, **cos)
        qual = combine(cos)
        res = {term: ev.pauc(q) for term, q in qual.items()}
        if ev.paired_se is not None:  # is eq. 7 really better than the references?
            for ref_name, ref_q in ev.reference_qualities.items():
                res["eq7"][f"se_vs_{ref_name}"] = ev.paired_se(qual["eq7"], ref_q)
        results["settings"][name] = {"pauc": res, "s_per_face": sec,
                                     "unet_passes_per_face": scorer.unet_passes_per_face,
                                     "mean_cos": {k: float(v.mean()) for k, v in cos.items()}}
        print(f"{name}: {sec:.2f} s/face " + " ".join(
            f"{k} {m}: {v[m]['pauc_0.2']:.3f}/{v[m]['pauc_0.3']:.3f}" for k, v in res.items()
            for m in v if m in args.eval_embedders), file=sys.stderr)
        (out / "settings.json").write_text(json.dumps(results, indent=1))
    lines = []
    for model in (args.eval_embedders if args.lfw_pairs else ["arcface"]):
        lines += [f"{model} comparisons, normalized pAUC @0.2 / @0.3 (lower is better)", "",
                  "| setting | UNet passes / face | s / face | "
                  + " | ".join(TERMS) + " |", "|---|---|---|" + "---|" * len(TERMS)]
        for name, r in results["settings"].items():
            lines.append(f"| {name} | {r['unet_passes_per_face']} | {r['s_per_face']:.2f} | " + " | ".join(
                f"{r['pauc'][k][model]['pauc_0.2']:.3f} / {r['pauc'][k][model]['pauc_0.3']:.3f}"
                for k in TERMS) + " |")
        for ref, v in ev.references.items():
            lines.append(f"| {ref} | | | {v[model]['pauc_0.2']:.3f} / {v[model]['pauc_0.3']:.3f} |")
        lines.append("")
    for ref_name in ev.reference_qualities:
        key = f"se_vs_{ref_name}"
        lines += [f"eq7 minus {ref_name} (arcface), with its leave-one-identity-out jackknife "
                  "standard error:", ""]
        for name, r in results["settings"].items():
            e, ref_v = r["pauc"]["eq7"], ev.references[ref_name]["arcface"]
            lines.append(f"- {name}: " + ", ".join(
                f"@{lim[5:]} {e['arcface'][lim] - ref_v[lim]:+.3f} +- {e[key]['arcface'][lim]:.3f}"
                for lim in ("pauc_0.2", "pauc_0.3")))
        lines.append("")
    lines.append(json.dumps(ev.describe))
    (out / "settings.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results

