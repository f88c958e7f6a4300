"""Does a seed ensemble beat its members on faces none of them trained on?

Members trained with one ``--split-seed`` (``fiqa train ediffiqa ... --train-seed S
--split-seed 0``) share their held-out identities. This script scores those held-out celeba
faces with each member and with their ensemble (one :class:`RegressorEnsemble` module, as
``fiqa train ensemble`` builds it) and prints the normalized pAUC of the same-model FNMR-EDC
(ArcFace comparisons, threshold at FMR 1e-3 over the held-out faces' non-mated pairs, the
validation EDC of ``fiqa train``), next to the teacher's and embedding-norm's on the same faces
(from the members' sidecars, which must agree).

    fiqa-bench run ensemble_held_out --member runs/s0/ediffiqa_mbf.safetensors \\
        --member runs/s1-split0/ediffiqa_mbf.safetensors \\
        --member runs/s2-split0/ediffiqa_mbf.safetensors --out results/ensemble_held_out.json
"""

from __future__ import annotations

import json

import numpy as np

from fiqa_sdk.errors import InvalidArgumentError

from ..harness import experiment


def held_out_split(metas: list[dict]) -> tuple[int, float]:
    """``(split seed, validation fraction)`` shared by all members.

    Raises
    ------
    InvalidArgumentError
        If the members hold out different identities.
    """
    splits = set()
    for m in metas:
        cfg = m.get("config", {})
        seed = cfg.get("split_seed")
        splits.add((int(cfg.get("seed", 0) if seed is None else seed), float(cfg.get("val_fraction", 0.1))))
    if len(splits) != 1:
        raise InvalidArgumentError(f"ensemble_held_out: the members hold out different identities "
                         f"(split seed, fraction): {sorted(splits)}; train them with one --split-seed")
    return splits.pop()


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--member", action="append", default=[], metavar="PATH",
                    help="a regressor's .safetensors (repeatable; at least two, one split)")
    ap.add_argument("--cache", default=None, help="cache folder (default $FIQA_CACHE)")
    ap.add_argument("--data", default=None, help="training set (default the celeba-subset)")


@experiment("ensemble_held_out", "does a seed ensemble beat its members on held-out "
            "faces?",
            arguments=arguments,
            requires="two or more trained single-regressor members of one held-out split "
                     "(fiqa train ediffiqa --split-seed runs)")
def run(args, ctx) -> dict:
    """Held-out pAUC of each member, of the ensemble and of the references."""
    if len(args.member) < 2:
        raise InvalidArgumentError("give at least two --member weights")
    import fiqa_sdk as fq
    from fiqa_sdk.quality.ediffiqa import RegressorEnsemble, RegressorScorer, load_regressor
    from fiqa_sdk.train.data import build_aligned_cache, celeba_root
    from fiqa_sdk.train.distill import HeldOutVerification, split_identities
    from fiqa_sdk.train.labels import target_embeddings

    loaded = [load_regressor(p) for p in args.member]
    metas = [m for _, m in loaded]
    split_seed, fraction = held_out_split(metas)
    data = build_aligned_cache(celeba_root(args.data), cache=args.cache)
    n = int(metas[0].get("labels", {}).get("faces", len(data)))
    faces, ids = np.asarray(data.faces[:n]), data.identities[:n]
    val = np.flatnonzero(split_identities(ids, fraction, split_seed))
    emb, _ = target_embeddings(faces, fq.create_embedder("arcface"), cache_dir=data.path)
    ver = HeldOutVerification(emb[val], ids[val])
    rows: dict[str, dict] = {}
    for i, (model, meta) in enumerate(loaded):
        q = RegressorScorer(model, name=f"member{i}").score(faces[val])
        rows[f"member {i} (seed {meta['config'].get('seed')})"] = ver.pauc(q)
    ens = RegressorScorer(RegressorEnsemble.from_regressors(loaded, args.member), name="ensemble")
    rows[f"ensemble of {len(loaded)}"] = ver.pauc(ens.score(faces[val]))
    refs = {json.dumps(m.get("held_out_verification", {}).get("teacher"), sort_keys=True) for m in metas}
    ho = metas[0].get("held_out_verification", {})
    if len(refs) == 1 and ho.get("teacher"):
        rows["teacher (sidecar)"] = ho["teacher"]
        if ho.get("embedding-norm"):
            rows["embedding-norm (sidecar)"] = ho["embedding-norm"]
    singles = [v for k, v in rows.items() if k.startswith("member")]
    rows["mean of the members' pAUCs"] = {k: float(np.mean([s[k] for s in singles])) for k in singles[0]}
    out = {"split_seed": split_seed, "val_fraction": fraction, "faces": int(len(val)),
           "identities": int(len(np.unique(ids[val]))), "mated": int(len(ver.mated)),
           "fnmr0": ver.fnmr0, "rows": rows, "members": args.member}
    print(f"held-out identities: split seed {split_seed}, {out['identities']} identities, "
          f"{out['faces']} faces, {out['mated']} mated pairs, FNMR_0 {ver.fnmr0:.4f}")
    print("| scorer | pAUC@0.2 | pAUC@0.3 |\n|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v['pauc_0.2']:.3f} | {v['pauc_0.3']:.3f} |")
    return out

