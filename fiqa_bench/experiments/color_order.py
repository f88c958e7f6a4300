"""What passing an RGB array as BGR does to the scores (the example in docs/faq.md, "BGR or RGB?").

    fiqa-bench run color_order                       # embedding-norm and the gate's default
    fiqa-bench run color_order --scorers embedding-norm ediffiqa --out results/color.json
    fiqa-bench run color_order --quick               # smoke run (CI): embedding-norm only

The sample face that ships with scikit-image (``skimage.data.astronaut()``, an RGB array) goes
through a default :class:`fiqa_sdk.QualityGate` (RetinaFace, ArcFace, face policy ``largest``)
twice per scorer: with ``color="rgb"`` (right) and without it, i.e. read as BGR, the default for
numpy arrays (red and blue swapped). Prints each scorer's two scores and the cosine similarity
of the two L2-normalised ArcFace embeddings (1.0 would mean the swap changes nothing). The
default ``--scorers`` are ``embedding-norm`` and the gate's default scorer
(``fiqa_sdk.gate.default_scorer_name()``, ``ediffiqa`` with the shipped weights). Nothing is
cached; about 10 s on a CPU.
"""

from __future__ import annotations

import time

from fiqa_sdk.errors import EvaluationError

from ..harness import experiment



def measure(scorers: list[str]) -> dict:
    """Scores of the astronaut read as RGB and as BGR per scorer, and the embeddings' cosine."""
    import numpy as np
    from skimage.data import astronaut

    import fiqa_sdk as fq

    img = astronaut()
    rows, emb = [], {}
    for name in scorers:
        gate = fq.QualityGate(scorer=name)
        right = gate.assess(img, color="rgb")
        swapped = gate.assess(img)  # numpy arrays are taken as BGR
        for r in (right, swapped):
            if r.score is None:
                raise EvaluationError(f"{name}: no score for the astronaut ({r.reason})")
        rows.append({"scorer": gate.scorer.name, "rgb": float(right.score),
                     "as_bgr": float(swapped.score),
                     "det_score_rgb": float(right.face.det_score),
                     "det_score_as_bgr": float(swapped.face.det_score)})
        emb.setdefault("rgb", right.embedding)
        emb.setdefault("as_bgr", swapped.embedding)
    a, b = (np.asarray(emb[k], dtype=np.float64) for k in ("rgb", "as_bgr"))
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return {"image": "skimage.data.astronaut", "rows": rows, "embedding_cosine": cosine}


def render(result: dict) -> str:
    lines = ['| scorer | `color="rgb"` | RGB array read as BGR |', "|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['scorer']} | {r['rgb']:.4f} | {r['as_bgr']:.4f} |")
    lines.append("")
    lines.append(f"cosine of the two ArcFace embeddings: {result['embedding_cosine']:.4f}")
    return "\n".join(lines)


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--scorers", nargs="+", default=None,
                    help="scorers (default: embedding-norm and the gate's default scorer)")


@experiment("color_order", "what passing an RGB array as BGR does to the scores "
            "(docs/faq.md)",
            arguments=arguments)
def run(args, ctx) -> dict:
    """Each scorer's score of the astronaut as RGB and as BGR, and the embeddings' cosine."""
    from fiqa_sdk.gate import default_scorer_name

    scorers = args.scorers or (["embedding-norm"] if args.quick else list(
        dict.fromkeys(["embedding-norm", default_scorer_name()])))
    t0 = time.perf_counter()
    result = measure(scorers)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(render(result))
    return result

