"""Class splits and the batched trainer: S contrastive linear probes in one computation.

Every probe (one per class split, plus one permutation-control probe per split) has the same
shapes, so their parameters are stacked on a leading probe dimension S and trained by one loop of
``epochs`` steps with batched matrix products (``torch.baddbmm`` / ``torch.bmm``). A single probe
is the same code with S = 1, and the two agree: each probe's initial weights come from its own
generator seeded by ``(seed, split)``, the loss is a *sum* over probes (so each probe's gradient is
exactly the gradient of its own loss), and AdamW updates every element independently. The unit
tests check that S batched probes equal S probes trained one at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from ausweep.probe.config import ProbeConfig

# Independent random streams drawn from one (seed, split) pair, so that changing how splits are
# drawn never changes the initial weights or the control's permutation, and vice versa.
_SPLIT_STREAM, _INIT_STREAM, _PERM_STREAM = 0, 1, 2


def _rng(seed: int, split: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, split, stream])


# ----------------------------------------------------------------------------- splits


def n_train_classes(n_classes: int, train_frac: float) -> int:
    """Training classes per split: ``train_frac * n_classes`` rounded half up (0.7 * 144 -> 101).

    The tiny epsilon keeps ties rounding up despite float error (0.7 * 15 is 10.4999... in binary).
    """
    return math.floor(train_frac * n_classes + 0.5 + 1e-9)


def make_splits(n_classes: int, n_splits: int, train_frac: float, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random train / held-out class splits, reproducible from ``(seed, split index)``.

    Split ``s`` is a permutation of the classes drawn from its own generator, seeded by
    ``(seed, s)``: the first :func:`n_train_classes` classes train, the rest are held out. Splits
    are independent draws (not folds), so a class may be held out in several splits or in none.

    Returns:
        ``n_splits`` pairs ``(train_idx, test_idx)`` of sorted int64 class indices that are
        disjoint and together cover ``range(n_classes)``.
    """
    n_train = n_train_classes(n_classes, train_frac)
    n_test = n_classes - n_train
    if n_train < 2 or n_test < 1:
        raise ValueError(
            f"a split needs at least 2 training classes and 1 held-out class; {n_classes} classes with "
            f"train_frac={train_frac} give {n_train} train and {n_test} held out"
        )
    splits = []
    for s in range(n_splits):
        order = _rng(seed, s, _SPLIT_STREAM).permutation(n_classes)
        splits.append((np.sort(order[:n_train]), np.sort(order[n_train:])))
    return splits


def split_masks(splits: Sequence[tuple[np.ndarray, np.ndarray]], n_classes: int) -> np.ndarray:
    """(S, C) bool: ``masks[s, c]`` is True where class ``c`` trains in split ``s``."""
    masks = np.zeros((len(splits), n_classes), dtype=bool)
    for s, (train_idx, _) in enumerate(splits):
        masks[s, train_idx] = True
    return masks


def shuffled_pairing(splits: Sequence[tuple[np.ndarray, np.ndarray]], n_classes: int, seed: int) -> np.ndarray:
    """(S, C) int64: the text row paired with each audio row in the permutation control.

    Within each split the training classes' text rows are shuffled among themselves by a fixed
    permutation seeded by ``(seed, split)``; held-out rows stay in place (they are not trained on,
    and are scored against the true texts). Shuffling only within the training set keeps the
    training set, and so its standardisation statistics, the same as the real probe's.
    """
    pairing = np.tile(np.arange(n_classes), (len(splits), 1))
    for s, (train_idx, _) in enumerate(splits):
        pairing[s, train_idx] = _rng(seed, s, _PERM_STREAM).permutation(train_idx)
    return pairing


# ----------------------------------------------------------------------------- parameters


@dataclass
class ProbeParams:
    """Parameters of S probes stacked on a leading probe dimension."""

    w_text: torch.Tensor  # (S, dt, k)
    b_text: torch.Tensor  # (S, k)
    w_audio: torch.Tensor  # (S, da, k)
    b_audio: torch.Tensor  # (S, k)

    @property
    def n_probes(self) -> int:
        return self.w_text.shape[0]

    def tensors(self) -> list[torch.Tensor]:
        return [self.w_text, self.b_text, self.w_audio, self.b_audio]

    def select(self, idx: slice | Sequence[int]) -> ProbeParams:
        """The probes ``idx`` (a slice keeps the probe dimension: ``select(slice(2, 3))`` is S = 1)."""
        return ProbeParams(*(t[idx] for t in self.tensors()))

    @staticmethod
    def cat(parts: Sequence[ProbeParams]) -> ProbeParams:
        """Stack several groups of probes into one, in order."""
        return ProbeParams(*(torch.cat(ts) for ts in zip(*(p.tensors() for p in parts))))


def init_params(text_dim: int, audio_dim: int, shared_dim: int, seed: int, splits: Sequence[int]) -> ProbeParams:
    """Initial weights of one probe per entry of ``splits``, each from a generator seeded by ``(seed, split)``.

    The distribution is ``torch.nn.Linear``'s, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
    biases. Drawing on the CPU makes the start identical on every device, and a probe's start
    depends only on its own ``(seed, split)``: the same whether it trains alone or in a batch.
    """
    parts = []
    for split in splits:
        state = np.random.SeedSequence([seed, split, _INIT_STREAM]).generate_state(1, dtype=np.uint64)[0]
        g = torch.Generator().manual_seed(int(state))

        def uniform(*shape: int, fan_in: int, g: torch.Generator = g) -> torch.Tensor:
            return (torch.rand(1, *shape, generator=g) * 2 - 1) / math.sqrt(fan_in)

        parts.append(
            ProbeParams(
                w_text=uniform(text_dim, shared_dim, fan_in=text_dim),
                b_text=uniform(shared_dim, fan_in=text_dim),
                w_audio=uniform(audio_dim, shared_dim, fan_in=audio_dim),
                b_audio=uniform(shared_dim, fan_in=audio_dim),
            )
        )
    return ProbeParams.cat(parts)


# ----------------------------------------------------------------------------- projection and loss


def project(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Unit-norm linear projection of S batches: x (S, n, d), w (S, d, k), b (S, k) -> (S, n, k)."""
    return F.normalize(torch.baddbmm(b.unsqueeze(1), x, w), dim=-1)


def symmetric_infonce(z_audio: torch.Tensor, z_text: torch.Tensor, temperature: float) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss of each probe: z_audio, z_text (S, n, k) unit rows -> (S,).

    Row i of both sides is the positive pair; the other n - 1 rows of the batch are negatives.
    The loss is the mean of the audio->text and text->audio cross-entropies.
    """
    logits = torch.bmm(z_audio, z_text.transpose(1, 2)) / temperature  # (S, n, n): audio i vs text j
    audio_to_text = -F.log_softmax(logits, dim=2).diagonal(dim1=1, dim2=2).mean(dim=1)
    text_to_audio = -F.log_softmax(logits, dim=1).diagonal(dim1=1, dim2=2).mean(dim=1)
    return (audio_to_text + text_to_audio) / 2


def feature_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-probe mean and std over the training rows: x (S, n, d) -> two (S, 1, d) tensors.

    A feature constant over the training classes gets std 1 (centred, not divided by ~0, which
    would blow it up on held-out classes).
    """
    mean = x.mean(dim=1, keepdim=True)
    std = x.std(dim=1, keepdim=True, unbiased=False)
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))


def row_span_basis(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal bases of the row spans of S matrices: x (S, n, d) -> (S, d, n).

    Column j of probe s is its j-th right singular vector where the singular value is above
    numpy's ``matrix_rank`` tolerance, and zero where it is not (a rank-deficient probe, e.g.
    centred rows, whose span has n - 1 dimensions). The product ``basis @ basis^T`` (the projection
    onto the span) does not depend on the signs or order an SVD routine picks, so a probe trained
    alone and the same probe trained in a batch end up with the same weights.
    """
    _, sv, vh = torch.linalg.svd(x.double(), full_matrices=False)  # sv (S, m), vh (S, m, d), m = min(n, d)
    tol = sv[:, :1] * max(x.shape[1], x.shape[2]) * torch.finfo(x.dtype).eps
    basis = (vh * (sv > tol).unsqueeze(-1)).transpose(1, 2).to(x.dtype)  # (S, d, m)
    if basis.shape[2] < x.shape[1]:  # more rows than features: pad to n columns of zeros
        basis = F.pad(basis, (0, x.shape[1] - basis.shape[2]))
    return basis


@dataclass
class FittedProbes:
    """Trained probes with the standardisation statistics of their training classes."""

    params: ProbeParams
    text_mean: torch.Tensor  # (S, 1, dt)
    text_std: torch.Tensor  # (S, 1, dt)
    audio_mean: torch.Tensor  # (S, 1, da)
    audio_std: torch.Tensor  # (S, 1, da)

    def embed_text(self, text: torch.Tensor) -> torch.Tensor:
        """Unit-norm shared-space vectors: text (n, dt) for every probe, or (S, n, dt) -> (S, n, k)."""
        p = self.params
        x = (text - self.text_mean) / self.text_std
        return project(x.expand(p.n_probes, -1, -1), p.w_text, p.b_text)

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Unit-norm shared-space vectors: audio (n, da) for every probe, or (S, n, da) -> (S, n, k)."""
        p = self.params
        x = (audio - self.audio_mean) / self.audio_std
        return project(x.expand(p.n_probes, -1, -1), p.w_audio, p.b_audio)

    def select(self, idx: slice | Sequence[int]) -> FittedProbes:
        return FittedProbes(
            self.params.select(idx),
            self.text_mean[idx],
            self.text_std[idx],
            self.audio_mean[idx],
            self.audio_std[idx],
        )


@dataclass
class TrainResult:
    probes: FittedProbes
    loss_curve: torch.Tensor  # (epochs, S) on the CPU: each probe's train loss before each step
    final_loss: torch.Tensor  # (S,) on the CPU: each probe's train loss with its returned weights


# ----------------------------------------------------------------------------- training


def train_probes(
    text: np.ndarray | torch.Tensor,
    audio: np.ndarray | torch.Tensor,
    train_masks: np.ndarray | torch.Tensor,
    cfg: ProbeConfig,
    inits: ProbeParams,
    pairing: np.ndarray | torch.Tensor | None = None,
) -> TrainResult:
    """Train S contrastive linear probes together, full batch, for ``cfg.epochs`` AdamW steps.

    Args:
        text: (C, dt) class text embeddings.
        audio: (C, da) class audio embeddings; row i is the same class as text row i.
        train_masks: (S, C) bool, which classes train probe s. Every probe must train on the
            same number of classes (true of :func:`make_splits`), so the batch is rectangular.
        cfg: lr, weight_decay, temperature, epochs, standardize and device are read.
        inits: S probes' initial weights (:func:`init_params`); they are copied, not modified.
        pairing: (S, C) int, the text row paired with audio row c in probe s (default: row c).
            The permutation control passes :func:`shuffled_pairing`.

    Returns:
        The trained probes (on ``cfg.device``) and their loss curves.
    """
    device = torch.device(cfg.device)
    text_t = torch.as_tensor(text, dtype=torch.float32, device=device)
    audio_t = torch.as_tensor(audio, dtype=torch.float32, device=device)
    masks = torch.as_tensor(train_masks, dtype=torch.bool, device=device)
    n_probes, n_classes = masks.shape
    if inits.n_probes != n_probes:
        raise ValueError(f"inits hold {inits.n_probes} probes but train_masks has {n_probes} rows")
    if inits.w_text.shape[1] != text_t.shape[1] or inits.w_audio.shape[1] != audio_t.shape[1]:
        raise ValueError(
            f"inits expect text dim {inits.w_text.shape[1]} and audio dim {inits.w_audio.shape[1]}, "
            f"got {text_t.shape[1]} and {audio_t.shape[1]}"
        )
    counts = masks.sum(dim=1)
    if not bool((counts == counts[0]).all()) or int(counts[0]) < 2:
        raise ValueError(f"every probe must train on the same number (>= 2) of classes, got {counts.tolist()}")
    n_train = int(counts[0])
    # nonzero() lists (probe, class) in row-major order, so each probe's classes come out sorted.
    train_idx = masks.nonzero()[:, 1].view(n_probes, n_train)  # (S, n)
    if pairing is None:
        text_idx = train_idx
    else:
        text_idx = torch.as_tensor(pairing, dtype=torch.long, device=device).gather(1, train_idx)

    x_text = text_t[text_idx]  # (S, n, dt)
    x_audio = audio_t[train_idx]  # (S, n, da)
    if cfg.standardize:
        # LM hidden states have a few "massive activation" dimensions hundreds of times larger
        # than the rest, and the two sides differ in scale; unstandardised, those dimensions
        # dominate the projection and one learning rate cannot suit every model and layer. The
        # statistics come from the training classes only, so nothing about held-out classes leaks.
        t_mean, t_std = feature_stats(x_text)
        a_mean, a_std = feature_stats(x_audio)
    else:
        t_mean, a_mean = (torch.zeros(n_probes, 1, x.shape[2], device=device) for x in (x_text, x_audio))
        t_std, a_std = torch.ones_like(t_mean), torch.ones_like(a_mean)
    x_text = (x_text - t_mean) / t_std
    x_audio = (x_audio - a_mean) / a_std

    init = [t.detach().to(device=device, dtype=torch.float32) for t in inits.tensors()]
    if cfg.restrict_to_span:
        # About 70 training classes against 512-1600 features per side: most directions of each
        # space are spanned by no training class. Their weights would keep their random initial
        # values forever (no gradient reaches them) and add noise to every held-out projection;
        # with a flat spectrum that noise swamps the signal. So each map is learned on the span of
        # its training rows only: W = V @ U, V an orthonormal basis of that span, U trained from
        # V^T @ W_init (the part of the random start that lies in the span).
        basis_t, basis_a = row_span_basis(x_text), row_span_basis(x_audio)  # (S, dt, n), (S, da, n)
        init[0] = basis_t.transpose(1, 2) @ init[0]
        init[2] = basis_a.transpose(1, 2) @ init[2]
        x_text, x_audio = x_text @ basis_t, x_audio @ basis_a  # coordinates in the spans: (S, n, n)
    params = [t.clone().requires_grad_() for t in init]
    w_t, b_t, w_a, b_a = params
    # fused: one kernel per tensor instead of ~7 elementwise passes; with S stacked probes the
    # optimizer's memory traffic is a large share of each step (about 2x faster at S = 25 on CPU).
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type in ("cpu", "cuda"))

    def loss_per_probe() -> torch.Tensor:  # (S,)
        return symmetric_infonce(project(x_audio, w_a, b_a), project(x_text, w_t, b_t), cfg.temperature)

    # Kept on the device and copied once at the end: no host sync inside the loop.
    curve = torch.empty(cfg.epochs, n_probes, device=device)
    for step in range(cfg.epochs):
        opt.zero_grad(set_to_none=True)
        loss = loss_per_probe()
        # A sum, not a mean: probe s's parameters touch only loss[s], so each probe gets exactly
        # the gradient it would get alone. (A mean would scale it by 1/S, which AdamW almost,
        # but not exactly, undoes because of its epsilon.)
        loss.sum().backward()
        opt.step()
        curve[step] = loss.detach()
    with torch.no_grad():
        final = loss_per_probe()

    weights = [p.detach() for p in params]
    if cfg.restrict_to_span:  # back to maps on the whole feature space: zero outside the span
        weights[0], weights[2] = basis_t @ weights[0], basis_a @ weights[2]
    fitted = FittedProbes(ProbeParams(*weights), t_mean, t_std, a_mean, a_std)
    return TrainResult(fitted, curve.cpu(), final.cpu())


# ----------------------------------------------------------------------------- scoring


def candidate_scores(
    z_query: torch.Tensor, z_text: torch.Tensor, test_idx: torch.Tensor, candidates: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine scores of held-out queries against the candidate texts, and each query's true candidate.

    Args:
        z_query: (S, Q, k) unit-norm audio vectors of each split's Q held-out classes.
        z_text: (S, C, k) unit-norm text vectors of all C classes.
        test_idx: (S, Q) class index of each query.
        candidates: ``"all"`` scores against all C classes (train and held-out: the held-out
            audio must also beat the training classes the probe was fitted to); ``"heldout"``
            only against the Q held-out classes of the split.

    Returns:
        scores (S, Q, N) and targets (S, Q), N being C or Q.
    """
    if candidates == "all":
        return torch.bmm(z_query, z_text.transpose(1, 2)), test_idx
    if candidates == "heldout":
        held = z_text.gather(1, test_idx.unsqueeze(-1).expand(-1, -1, z_text.shape[-1]))  # (S, Q, k)
        targets = torch.arange(test_idx.shape[1], device=test_idx.device).expand_as(test_idx)
        return torch.bmm(z_query, held.transpose(1, 2)), targets
    raise ValueError(f"candidates must be 'all' or 'heldout', got {candidates!r}")


@torch.no_grad()
def heldout_scores(
    probes: FittedProbes,
    text: np.ndarray | torch.Tensor,
    audio: np.ndarray | torch.Tensor,
    test_idx: np.ndarray | torch.Tensor,
    candidates: str = "all",
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of every probe's held-out audio against the *true* class texts (see :func:`candidate_scores`).

    Args:
        test_idx: (S, Q) held-out classes of each probe.

    Returns:
        numpy scores (S, Q, N) and targets (S, Q), ready for :func:`~ausweep.probe.metrics.retrieval_ranks`.
    """
    device = probes.params.w_text.device
    text_t = torch.as_tensor(text, dtype=torch.float32, device=device)
    audio_t = torch.as_tensor(audio, dtype=torch.float32, device=device)
    idx = torch.as_tensor(test_idx, dtype=torch.long, device=device)
    z_text = probes.embed_text(text_t)  # (S, C, k)
    z_query = probes.embed_audio(audio_t[idx])  # (S, Q, k)
    scores, targets = candidate_scores(z_query, z_text, idx, candidates)
    return scores.cpu().numpy(), targets.cpu().numpy()
