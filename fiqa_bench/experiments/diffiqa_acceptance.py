"""DifFIQA acceptance (issue 4): denoiser PSNR and "quality follows degradation" on LFW.

    fiqa-bench run diffiqa_acceptance --quick   # smoke run (CI): 2 + 4 faces, n = 1
    fiqa-bench run diffiqa_acceptance           # 200 faces, n = 10: ~1.5-2 h on 1 thread
    fiqa-bench run diffiqa_acceptance --weights RUN/diffiqa_unet.safetensors \
        --regressor ediffiqa=RUN/ediffiqa_mbf.safetensors --regressor ediffiqa-free=...

a. PSNR of x_t = q_sample(x, t) and of its restoration x_hat (the scorer's DDIM eta = 1 chain,
   and the fast mode's one-step x0 prediction) against the clean aligned crop, t = 5 and 50.
b. Fraction of faces whose blurred (sigma 3 px) / downscaled (16 px, bilinear) / noisy
   (sigma 25 grey levels) copy scores lower than the original, for diffiqa (acceptance: >= 90%
   on each), the baselines and any --regressor. Details: fiqa_bench/diffiqa_checks.py.

Prints Markdown tables and writes JSON to --out (default results/diffiqa_acceptance.json).
--weights defaults to $FIQA_DIFFIQA_WEIGHTS, else the shipped denoiser. Run with OMP_NUM_THREADS=1 on a shared
machine (--threads 1 is the default).
"""

from __future__ import annotations


from ..harness import experiment

#: ``--quick`` (the CI smoke run): faces of the PSNR and of the degradation check; DifFIQA
#: repeats as ``fiqa_bench.diffiqa_checks.QUICK_N``
QUICK_PSNR_FACES, QUICK_QUALITY_FACES = 2, 4

def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    from .. import diffiqa_checks as dc

    ap.add_argument("--weights", default=None, help="DifFIQA denoiser .safetensors (+ .json)")
    ap.add_argument("--faces", type=int, default=None, help="faces of both checks (default 200)")
    ap.add_argument("--psnr-faces", type=int, default=None, help="faces of the PSNR check")
    ap.add_argument("--quality-faces", type=int, default=None,
                    help="faces of the degradation check")
    ap.add_argument("--ts", type=int, nargs="+", default=list(dc.DEFAULT_TS),
                    help="forward levels of the PSNR check (default 5 50)")
    ap.add_argument("--t", type=int, default=5, help="diffiqa forward steps (default 5)")
    ap.add_argument("--n", type=int, default=None,
                    help="diffiqa repeats (default 10; --fast 2; --quick 1)")
    ap.add_argument("--fast", action="store_true", help="diffiqa fast mode (one-step x0)")
    ap.add_argument("--regressor", action="append", default=[], metavar="NAME=PATH",
                    help="also score with a regressor: ediffiqa, ediffiqa-free or diffiqa-r "
                         "(repeatable)")
    ap.add_argument("--baselines", nargs="*", default=list(dc.BASELINES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch / onnxruntime threads (default 1)")
    ap.add_argument("--batch-size", type=int, default=40, help="UNet samples per pass")
    ap.add_argument("--lfw", default=None,
                    help="LFW root (default $FIQA_LFW)")
    ap.add_argument("--cache", default=None, help="detection cache (default $FIQA_CACHE/lfw)")
    ap.add_argument("--progress", action="store_true")


@experiment("diffiqa_acceptance", "DifFIQA acceptance: denoiser PSNR and quality follows "
            "degradation on LFW",
            arguments=arguments, quick={"threads": 2},
            default_out="results/diffiqa_acceptance.json")
def run(args, ctx) -> dict:
    """The result of :func:`fiqa_bench.diffiqa_checks.run_acceptance`."""
    from .. import diffiqa_checks as dc

    full = 200
    base = args.faces if args.faces is not None else None
    psnr_faces = args.psnr_faces if args.psnr_faces is not None else (
        base if base is not None else (QUICK_PSNR_FACES if args.quick else full))
    quality_faces = args.quality_faces if args.quality_faces is not None else (
        base if base is not None else (QUICK_QUALITY_FACES if args.quick else full))
    if args.n is not None:
        n = args.n
    else:
        n = dc.QUICK_N if args.quick else (None if args.fast else 10)
    from ..diffiqa_checks import default_weights  # $FIQA_DIFFIQA_WEIGHTS or None

    weights = args.weights if args.weights is not None else default_weights()
    log = ctx.log
    log(f"weights {weights or 'shipped'}; {psnr_faces} PSNR faces, {quality_faces} degradation "
        f"faces, t={args.t}, n={n if n is not None else 'default'}{', fast' if args.fast else ''}")
    result = dc.run_acceptance(
        weights=weights, psnr_faces=psnr_faces, quality_faces=quality_faces, ts=args.ts,
        t=args.t, n=n, fast=args.fast, regressors=dc.parse_regressors(args.regressor),
        baselines=args.baselines, seed=args.seed, lfw_root=args.lfw, cache_dir=args.cache,
        threads=args.threads, batch_size=args.batch_size, quick=args.quick,
        progress=args.progress, log=log)
    print(dc.markdown(result))
    return result

