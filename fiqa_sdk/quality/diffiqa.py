"""DifFIQA: face image quality from the stability of FR embeddings under diffusion.

Babnik, Peer, Struc, "DifFIQA: Face Image Quality Assessment Using Denoising Diffusion
Probabilistic Models", IJCB 2023 (eq. 7 in its eDifFIQA form). For an aligned face ``x`` and
its mirror ``x^f``, each of ``n`` repeats noises both with ``t`` forward steps (``x_t``,
``x^f_t``) and restores them with the DDIM backward process of a trained denoiser
(``x_hat``, ``x_hat^f``). The quality is the mean cosine similarity between the embedding of
``x`` and those of ``{x_t, x_hat, x^f, x^f_t, x_hat^f}`` (every term compares to the unflipped
original; the ``x^f`` term is the same in every repeat). Higher = better quality.

Sampler: see :mod:`fiqa_sdk.diffusion.schedule` (cosine schedule, T = 1000, x0-prediction,
DDIM with eta = 1 over the time pairs ``(t-1, t-2), ..., (1, 0), (0, 0), (0, -1)``), i.e.
``t + 1`` UNet passes per copy: with the defaults (t = 5, n = 10, flip) one face costs
``2 n (t + 1) = 120`` UNet passes plus ``4 n + 2 = 42`` FR passes.

Fast mode (``fast=True``): the backward process is a single x0 prediction
``x_hat = D(x_t, t)`` (one UNet pass per copy) and ``n`` defaults to 2, so one face costs
4 UNet passes instead of 120 (its run time: docs/benchmarks.md "Runtime per face"). Its scores
approximate, and are not identical to, the full ones.

Reproducibility: the noise of each face is drawn from a generator seeded by ``seed`` and a
hash of the face's pixels, so the same crop and seed give the same score whatever else is in
the batch and whichever order the batch is in (up to float rounding of batched convolutions).
Noisy and restored images are quantised to uint8 before embedding (the embedder API takes
crops), which changes cosines by well under 1e-3.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .._torch import torch_device
from .._weights import read_sidecar, sidecar_path
from ..diffusion.schedule import Schedule, stochastic_steps, time_pairs
from ..diffusion.unet import UNet, UNetConfig
from ..embed import Embedder, create_embedder
from ..errors import InvalidArgumentError, WeightsError
from ..types import Face
from .base import Scorer, model_digest

#: The shipped denoiser (absent until a trained model is shipped with the package).
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "diffiqa_unet.safetensors"


def load_denoiser(weights: str | Path | None = None, verify: bool = True) -> tuple[UNet, dict]:
    """The DifFIQA UNet from a safetensors file and its JSON sidecar (``<name>.json``).

    The sidecar gives the architecture (``unet``) and the file's ``sha256``, which is checked
    unless ``verify=False``. Raises :class:`WeightsError` with instructions when missing.
    """
    from safetensors.torch import load_file

    path = DEFAULT_WEIGHTS if weights is None else Path(weights).expanduser()
    if weights is None and not path.is_file():
        raise WeightsError(
            "DifFIQA's denoiser is not trained/shipped yet: "
            f"{path.name} is not in fiqa_sdk/weights. Train one with "
            "`fiqa train ddpm --out DIR` and pass "
            "create_scorer('diffiqa', weights='DIR/diffiqa_unet.safetensors') "
            "(its .json sidecar must sit next to it)"
        )
    meta = read_sidecar(path, verify=verify, what="DifFIQA weights",
                        hint="; export weights with fiqa_sdk.train.ddpm.export_weights")
    model = UNet(UNetConfig.from_dict(meta["unet"]))
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"DifFIQA weights {path} do not match the architecture in "
                           f"{sidecar_path(path).name}: {str(exc).splitlines()[0]}") from exc
    return model, meta


def face_seed(crop: np.ndarray, seed: int) -> int:
    """63-bit seed of one aligned crop: a keyed hash of its pixels."""
    h = hashlib.blake2b(np.ascontiguousarray(crop).tobytes(), digest_size=8,
                        key=int(seed).to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest(), "little") & (2**63 - 1)


class DifFIQAScorer(Scorer):
    """DifFIQA quality of aligned ArcFace crops (higher = better), in [-1, 1].

    Parameters
    ----------
    weights : path, UNet or None
        The denoiser: a ``.safetensors`` file with its ``.json`` sidecar, an already built
        :class:`~fiqa_sdk.diffusion.unet.UNet`, or None for the shipped model.
    embedder : str, Embedder or callable
        The FR model M whose embedding stability is measured (default ``"arcface"``).
    t : int
        Forward (noising) steps (default 5).
    n : int or None
        Repeats (default 10; 2 in fast mode).
    flip : bool
        Also perturb the horizontally mirrored face (default True).
    seed : int
        Seed of the diffusion noise.
    eta : float
        DDIM stochasticity of the backward process (1 = the official sampler).
    fast : bool
        One-step x0 restoration instead of the DDIM chain (see the module docstring).
    device : {"cpu", "cuda", "auto"}
        Where the UNet runs.
    batch_size : int
        Noisy copies perturbed together; faces are processed in chunks of
        ``max(1, batch_size // copies)`` with ``copies = n * (2 if flip else 1)``.
    unet_batch : int or None
        Samples per UNet forward pass within a chunk (default: 8 on the CPU, where this small
        UNet is cache-bound and a pass over 8 samples costs less per sample than one over 40,
        see docs/benchmarks.md "Runtime per face", ``fiqa-bench run unet_pass_size``;
        the whole chunk on CUDA). Scores do not depend on it
        beyond float rounding: the noise is drawn per face before the passes.
    verify : bool
        Check the weights' sha256 against their sidecar.
    """

    name = "diffiqa"

    def __init__(self, weights: str | Path | torch.nn.Module | None = None, embedder: Any = "arcface",
                 t: int = 5, n: int | None = None, flip: bool = True, seed: int = 0, eta: float = 1.0,
                 fast: bool = False, device: str = "cpu", batch_size: int = 40, verify: bool = True,
                 unet_batch: int | None = None, **embedder_kwargs: Any) -> None:
        self.t = int(t)
        time_pairs(self.t)  # validates t
        self.fast = bool(fast)
        self.n = int(n) if n is not None else (2 if self.fast else 10)
        if self.n < 1:
            raise InvalidArgumentError(f"n (repeats) must be >= 1, got {self.n}")
        self.flip = bool(flip)
        self.seed = int(seed)
        self.eta = float(eta)
        self.batch_size = int(batch_size)
        self.device = torch_device(device)
        if unet_batch is not None and int(unet_batch) < 1:
            raise InvalidArgumentError(f"unet_batch must be >= 1, got {unet_batch}")
        self.unet_batch = int(unet_batch) if unet_batch is not None else (
            8 if self.device.type == "cpu" else None)
        self.schedule = Schedule()
        if self.t >= self.schedule.T:
            raise InvalidArgumentError(f"t must be < {self.schedule.T}, got {self.t}")
        if isinstance(weights, torch.nn.Module):
            self.model, self.meta = weights, {}
        else:
            self.model, self.meta = load_denoiser(weights, verify=verify)
        self.weights_sha256 = model_digest(self.model, self.meta)  # part of the bench cache key
        self.model = self.model.to(self.device).eval().requires_grad_(False)
        self._channels_last = self.device.type == "cpu"
        if self._channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if isinstance(embedder, str) and embedder == "arcface" and self.device.type == "cuda":
            embedder_kwargs.setdefault("device", "cuda")
        self.embedder: Embedder = create_embedder(embedder, **embedder_kwargs)
        if self.embedder.input_size != 112:
            raise InvalidArgumentError("diffiqa needs an embedder of 112x112 ArcFace crops")

    @property
    def copies(self) -> int:
        """Noisy copies per face: ``n`` of the face, and ``n`` of its mirror if ``flip``."""
        return self.n * (2 if self.flip else 1)

    @property
    def unet_passes_per_face(self) -> int:
        return self.copies * (1 if self.fast else len(time_pairs(self.t)))

    def __repr__(self) -> str:
        return (f"DifFIQAScorer(t={self.t}, n={self.n}, flip={self.flip}, seed={self.seed}, "
                f"fast={self.fast}, device={self.device.type!r})")

    # -- diffusion ---------------------------------------------------------------------
    def denoise(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The UNet's output for noisy images ``x`` ``(B, 3, 112, 112)`` in [-1, 1] at steps
        ``t`` ``(B,)``, run ``unet_batch`` samples per pass (float32)."""
        step = self.unet_batch or len(x)
        if len(x) > step:
            return torch.cat([self._denoise_pass(x[i : i + step], t[i : i + step])
                              for i in range(0, len(x), step)])
        return self._denoise_pass(x, t)

    def _denoise_pass(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x, t).float().contiguous()

    def _noise(self, chunk: np.ndarray) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-face noise ``(c * copies, 3, 112, 112)`` for the forward step and each
        stochastic backward step, drawn on the CPU from each face's own generator."""
        k = 0 if self.fast else stochastic_steps(self.t, self.eta)
        fwd, bwd = [], [[] for _ in range(k)]
        shape = (self.copies, 3, 112, 112)
        for crop in chunk:
            g = torch.Generator().manual_seed(face_seed(crop, self.seed))
            fwd.append(torch.randn(shape, generator=g))
            for j in range(k):
                bwd[j].append(torch.randn(shape, generator=g))
        dev = self.device
        return torch.cat(fwd).to(dev), [torch.cat(b).to(dev) for b in bwd]

    @torch.inference_mode()
    def forward_noise(self, aligned: np.ndarray) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The forward phase of :meth:`perturb`: the noisy copies ``x_t`` of validated crops,
        ``(N * copies, 3, 112, 112)`` in [-1, 1] (face-major; copy ``k < n`` of a face comes
        from the face, ``k >= n`` from its mirror), and the noise of the backward phase (one
        tensor per stochastic step), all drawn from each face's own seed."""
        from ..align import as_face_batch
        from .._preprocess import to_model_range

        aligned = as_face_batch(aligned)
        c = len(aligned)
        x = to_model_range(aligned).to(self.device)
        views = [x, x.flip(-1)] if self.flip else [x]
        start = torch.stack(views, 1).repeat_interleave(self.n, dim=1)  # (c, copies, ...)
        start = start.reshape(c * self.copies, 3, 112, 112)
        fwd, bwd = self._noise(aligned)
        return self.schedule.q_sample(start, self.t, fwd), bwd

    @torch.inference_mode()
    def restore(self, x_t: torch.Tensor, backward_noise: list[torch.Tensor]
                ) -> tuple[np.ndarray, np.ndarray]:
        """The backward phase of :meth:`perturb`: restore the output of :meth:`forward_noise`
        with the denoiser; returns the noisy and restored copies as :meth:`perturb` does."""
        from .._preprocess import from_model_range

        if self.fast:
            tt = torch.full((len(x_t),), self.t, dtype=torch.long, device=self.device)
            x_hat = self.denoise(x_t, tt).clamp(-1, 1)
        else:
            x_hat = self.schedule.restore(self.denoise, x_t, self.t, self.eta, backward_noise)
        shape = (len(x_t) // self.copies, self.copies, 112, 112, 3)
        return from_model_range(x_t).reshape(shape), from_model_range(x_hat).reshape(shape)

    def perturb(self, aligned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Noisy and restored copies of validated crops, each ``(N, copies, 112, 112, 3)``
        uint8 RGB; copy ``k < n`` comes from the face, ``k >= n`` from its mirror
        (:meth:`forward_noise`, then :meth:`restore`)."""
        return self.restore(*self.forward_noise(aligned))

    # -- scoring -----------------------------------------------------------------------
    def _score(self, aligned: np.ndarray, faces: Sequence[Face] | None) -> np.ndarray:
        chunk = max(1, self.batch_size // self.copies)
        out = np.empty(len(aligned))
        for i in range(0, len(aligned), chunk):
            out[i : i + chunk] = self._score_chunk(aligned[i : i + chunk])
        return np.clip(out, -1.0, 1.0)

    def _score_chunk(self, crops: np.ndarray) -> np.ndarray:
        return np.mean(list(self._terms_chunk(crops).values()), axis=0)

    def score_copies(self, aligned: np.ndarray, noisy: np.ndarray,
                     restored: np.ndarray) -> np.ndarray:
        """Eq. 7 of validated crops from their :meth:`perturb` output (the quality phase alone:
        the same values as :meth:`score` on these faces, before its clipping to [-1, 1])."""
        from ..align import as_face_batch

        return np.mean(list(self._terms_chunk(as_face_batch(aligned), (noisy, restored))
                            .values()), axis=0)

    #: The cosine terms of eq. 7 (each against the unflipped original's embedding).
    TERMS = ("noisy", "restored", "flip", "noisy_flip", "restored_flip")

    def terms(self, aligned: np.ndarray) -> dict[str, np.ndarray]:
        """The terms of eq. 7 of each face, ``{name: (N,)}``: cosine with ``x_t`` (``noisy``),
        ``x_hat`` (``restored``) and, with ``flip``, with ``x^f``, ``x^f_t``, ``x_hat^f``
        (each averaged over the ``n`` repeats). Their mean is :meth:`score`'s value (before
        its clipping to [-1, 1])."""
        from ..align import as_face_batch

        aligned = as_face_batch(aligned)
        chunk = max(1, self.batch_size // self.copies)
        parts = [self._terms_chunk(aligned[i : i + chunk]) for i in range(0, len(aligned), chunk)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}

    def _terms_chunk(self, crops: np.ndarray, copies: tuple[np.ndarray, np.ndarray] | None = None
                     ) -> dict[str, np.ndarray]:
        c, n = len(crops), self.n
        x_t, x_hat = self.perturb(crops) if copies is None else copies
        parts = [crops] + ([crops[:, :, ::-1]] if self.flip else [])
        emb = self.embedder.embed(np.concatenate(
            parts + [x_t.reshape(-1, 112, 112, 3), x_hat.reshape(-1, 112, 112, 3)]))
        e_x = emb[:c]
        k = len(parts) * c
        e_t = emb[k : k + c * self.copies].reshape(c, self.copies, -1)
        e_h = emb[k + c * self.copies :].reshape(c, self.copies, -1)
        cos_t = np.einsum("cd,ckd->ck", e_x, e_t)
        cos_h = np.einsum("cd,ckd->ck", e_x, e_h)
        # eq. 7: the mean over the set {x_t, x_hat, (x^f, x^f_t, x_hat^f)}, each averaged over n
        terms = {"noisy": cos_t[:, :n].mean(1), "restored": cos_h[:, :n].mean(1)}
        if self.flip:
            terms.update(flip=np.einsum("cd,cd->c", e_x, emb[c : 2 * c]),
                         noisy_flip=cos_t[:, n:].mean(1), restored_flip=cos_h[:, n:].mean(1))
        return terms
