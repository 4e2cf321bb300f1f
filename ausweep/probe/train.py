"""Class splits and the batched trainer: many contrastive linear probes in one computation.

Every probe (per class split: the probe scored on its held-out classes, its permutation control,
and the selection probe scored on its validation classes) has the same parameter shapes, so their
parameters are stacked on a leading probe dimension P and trained by one loop of ``epochs`` steps
with batched matrix products (``torch.baddbmm`` / ``torch.bmm``). Probes may train on different
numbers of classes (a selection probe trains on fewer; a class whose clips were all excluded drops
out of one split): their rows are padded and masked out of the statistics and the loss. Each probe
may have its own audio class vectors (class means computed per split, see :mod:`.clips`).

A single probe is the same code with P = 1, and the two agree: each probe's initial weights come
from its own generator seeded by ``(seed, split)``, the loss is a *sum* over probes (so each probe's
gradient is exactly the gradient of its own loss), padding rows contribute exactly nothing, and
AdamW updates every element independently. The unit tests check that P batched probes equal P
probes trained one at a time.
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
_SPLIT_STREAM, _INIT_STREAM, _PERM_STREAM, _VAL_STREAM = 0, 1, 2, 3
# Logit of a padding row or column: exp() of it underflows to exactly 0 in float32, so padded
# entries change no softmax, and being finite it never makes inf - inf = NaN.
_MASKED_LOGIT = -1e9


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


def carve_validation(
    splits: Sequence[tuple[np.ndarray, np.ndarray]], val_fraction: float, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validation classes carved out of each split's training classes, for choosing hyperparameters.

    Split ``s``'s training classes are shuffled by a generator seeded by ``(seed, s)`` (a stream of
    its own, so the splits themselves do not change): the first round-half-up(``val_fraction`` *
    n_train) become validation classes, the rest *fit* classes. Held-out classes are never touched.

    Returns:
        one ``(fit_idx, val_idx)`` pair of sorted class indices per split; together they are that
        split's ``train_idx``.
    """
    out = []
    for s, (train_idx, _) in enumerate(splits):
        n_val = n_train_classes(len(train_idx), val_fraction)
        n_fit = len(train_idx) - n_val
        if n_val < 1 or n_fit < 2:
            raise ValueError(
                f"validation needs at least 1 validation and 2 fit classes; {len(train_idx)} training classes "
                f"with val_fraction={val_fraction} give {n_val} validation and {n_fit} fit classes"
            )
        order = _rng(seed, s, _VAL_STREAM).permutation(train_idx)
        out.append((np.sort(order[n_val:]), np.sort(order[:n_val])))
    return out


def split_masks(splits: Sequence[tuple[np.ndarray, np.ndarray]], n_classes: int) -> np.ndarray:
    """(S, C) bool: ``masks[s, c]`` is True where class ``c`` is in the first part of split ``s``
    (its training classes for :func:`make_splits`, its fit classes for :func:`carve_validation`)."""
    masks = np.zeros((len(splits), n_classes), dtype=bool)
    for s, (train_idx, _) in enumerate(splits):
        masks[s, train_idx] = True
    return masks


def shuffled_pairing(train_masks: np.ndarray, seed: int) -> np.ndarray:
    """(S, C) int64: the text row paired with each audio row in the permutation control.

    Within each split the training classes' text rows (``train_masks[s]``) are shuffled among
    themselves by a fixed permutation seeded by ``(seed, split)``; the other rows stay in place
    (they are not trained on, and are scored against the true texts). Shuffling only within the
    training set keeps the training set, and so its standardisation statistics, the same as the
    real probe's.
    """
    train_masks = np.asarray(train_masks, dtype=bool)
    n_splits, n_classes = train_masks.shape
    pairing = np.tile(np.arange(n_classes), (n_splits, 1))
    for s in range(n_splits):
        train_idx = np.flatnonzero(train_masks[s])
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


def symmetric_infonce(
    z_audio: torch.Tensor, z_text: torch.Tensor, temperature: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss of each probe: z_audio, z_text (P, n, k) unit rows -> (P,).

    Row i of both sides is the positive pair; the other valid rows of the batch are negatives.
    The loss is the mean of the audio->text and text->audio cross-entropies over the valid rows.

    Args:
        valid: (P, n) bool, False for padding rows (a probe with fewer training classes than the
            batch's widest); None means every row is valid.
    """
    logits = torch.bmm(z_audio, z_text.transpose(1, 2)) / temperature  # (P, n, n): audio i vs text j
    if valid is None:
        audio_to_text = -F.log_softmax(logits, dim=2).diagonal(dim1=1, dim2=2).mean(dim=1)
        text_to_audio = -F.log_softmax(logits, dim=1).diagonal(dim1=1, dim2=2).mean(dim=1)
        return (audio_to_text + text_to_audio) / 2
    pair = valid.unsqueeze(2) & valid.unsqueeze(1)  # (P, n, n): both rows real
    logits = logits.masked_fill(~pair, _MASKED_LOGIT)
    n_valid = valid.sum(dim=1).to(logits.dtype)
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)

    def positives(log_probs: torch.Tensor) -> torch.Tensor:  # (P,): summed over the valid rows
        return torch.where(valid, log_probs.diagonal(dim1=1, dim2=2), zero).sum(dim=1)

    audio_to_text = -positives(F.log_softmax(logits, dim=2)) / n_valid
    text_to_audio = -positives(F.log_softmax(logits, dim=1)) / n_valid
    return (audio_to_text + text_to_audio) / 2


def feature_stats(x: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-probe mean and std over the (valid) training rows: x (P, n, d) -> two (P, 1, d) tensors.

    A feature constant over the training classes gets std 1 (centred, not divided by ~0, which
    would blow it up on held-out classes).
    """
    if valid is None:
        mean = x.mean(dim=1, keepdim=True)
        std = x.std(dim=1, keepdim=True, unbiased=False)
    else:
        w = valid.unsqueeze(-1).to(x.dtype)  # (P, n, 1)
        count = w.sum(dim=1, keepdim=True)
        mean = (x * w).sum(dim=1, keepdim=True) / count
        std = (((x - mean) ** 2) * w).sum(dim=1, keepdim=True).div(count).sqrt()
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
    """Train P contrastive linear probes together, full batch, for ``cfg.epochs`` AdamW steps.

    Args:
        text: (C, dt) class text embeddings.
        audio: (C, da) class audio embeddings shared by every probe, or (P, C, da), probe p's own
            class vectors (class means over the clips that split may use); row c is class c.
        train_masks: (P, C) bool, which classes train probe p (at least 2 each; probes may differ).
        cfg: lr, weight_decay, temperature, epochs, standardize, restrict_to_span and device are read.
        inits: P probes' initial weights (:func:`init_params`); they are copied, not modified.
        pairing: (P, C) int, the text row paired with audio row c in probe p (default: row c).
            The permutation control passes :func:`shuffled_pairing`.

    Returns:
        The trained probes (on ``cfg.device``) and their loss curves.
    """
    device = torch.device(cfg.device)
    text_t = torch.as_tensor(text, dtype=torch.float32, device=device)
    audio_t = torch.as_tensor(audio, dtype=torch.float32, device=device)
    masks = torch.as_tensor(train_masks, dtype=torch.bool, device=device)
    n_probes, n_classes = masks.shape
    if audio_t.ndim == 2:
        audio_t = audio_t.expand(n_probes, -1, -1)
    if audio_t.shape[:2] != (n_probes, n_classes):
        raise ValueError(f"audio of shape {tuple(audio_t.shape)} does not match {n_probes} probes x {n_classes} classes")
    if inits.n_probes != n_probes:
        raise ValueError(f"inits hold {inits.n_probes} probes but train_masks has {n_probes} rows")
    if inits.w_text.shape[1] != text_t.shape[1] or inits.w_audio.shape[1] != audio_t.shape[2]:
        raise ValueError(
            f"inits expect text dim {inits.w_text.shape[1]} and audio dim {inits.w_audio.shape[1]}, "
            f"got {text_t.shape[1]} and {audio_t.shape[2]}"
        )
    counts = masks.sum(dim=1)
    if int(counts.min()) < 2:
        raise ValueError(f"every probe must train on at least 2 classes, got {counts.tolist()}")
    # Each probe's classes in ascending order, padded to the widest probe: a stable sort puts the
    # True entries first, in class order; `valid` marks the real rows.
    n_rows = int(counts.max())
    train_idx = torch.sort((~masks).to(torch.int8), dim=1, stable=True).indices[:, :n_rows]  # (P, n)
    valid = torch.arange(n_rows, device=device).unsqueeze(0) < counts.unsqueeze(1)  # (P, n)
    padded = not bool(valid.all())
    text_idx = train_idx if pairing is None else torch.as_tensor(pairing, dtype=torch.long, device=device).gather(1, train_idx)

    x_text = text_t[text_idx]  # (P, n, dt)
    x_audio = audio_t.gather(1, train_idx.unsqueeze(-1).expand(-1, -1, audio_t.shape[2]))  # (P, n, da)
    row_mask = valid.unsqueeze(-1).to(torch.float32) if padded else None
    if cfg.standardize:
        # LM hidden states have a few "massive activation" dimensions hundreds of times larger
        # than the rest, and the two sides differ in scale; unstandardised, those dimensions
        # dominate the projection and one learning rate cannot suit every model and layer. The
        # statistics come from the training classes only, so nothing about held-out classes leaks.
        t_mean, t_std = feature_stats(x_text, valid if padded else None)
        a_mean, a_std = feature_stats(x_audio, valid if padded else None)
    else:
        t_mean, a_mean = (torch.zeros(n_probes, 1, x.shape[2], device=device) for x in (x_text, x_audio))
        t_std, a_std = torch.ones_like(t_mean), torch.ones_like(a_mean)
    x_text = (x_text - t_mean) / t_std
    x_audio = (x_audio - a_mean) / a_std
    if row_mask is not None:  # padding rows are zero: they span nothing and carry no signal
        x_text, x_audio = x_text * row_mask, x_audio * row_mask

    init = [t.detach().to(device=device, dtype=torch.float32) for t in inits.tensors()]
    if cfg.restrict_to_span:
        # About 70 training classes against 512-1600 features per side: most directions of each
        # space are spanned by no training class. Their weights would keep their random initial
        # values forever (no gradient reaches them) and add noise to every held-out projection;
        # with a flat spectrum that noise swamps the signal. So each map is learned on the span of
        # its training rows only: W = V @ U, V an orthonormal basis of that span, U trained from
        # V^T @ W_init (the part of the random start that lies in the span).
        basis_t, basis_a = row_span_basis(x_text), row_span_basis(x_audio)  # (P, dt, n), (P, da, n)
        init[0] = basis_t.transpose(1, 2) @ init[0]
        init[2] = basis_a.transpose(1, 2) @ init[2]
        x_text, x_audio = x_text @ basis_t, x_audio @ basis_a  # coordinates in the spans: (P, n, n)
    params = [t.clone().requires_grad_() for t in init]
    w_t, b_t, w_a, b_a = params
    # fused: one kernel per tensor instead of ~7 elementwise passes; with P stacked probes the
    # optimizer's memory traffic is a large share of each step (about 2x faster at P = 25 on CPU).
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type in ("cpu", "cuda"))
    loss_valid = valid if padded else None

    def loss_per_probe() -> torch.Tensor:  # (P,)
        return symmetric_infonce(project(x_audio, w_a, b_a), project(x_text, w_t, b_t), cfg.temperature, loss_valid)

    # Kept on the device and copied once at the end: no host sync inside the loop.
    curve = torch.empty(cfg.epochs, n_probes, device=device)
    for step in range(cfg.epochs):
        opt.zero_grad(set_to_none=True)
        loss = loss_per_probe()
        # A sum, not a mean: probe p's parameters touch only loss[p], so each probe gets exactly
        # the gradient it would get alone. (A mean would scale it by 1/P, which AdamW almost,
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


@torch.no_grad()
def class_scores(
    probes: FittedProbes, text: np.ndarray | torch.Tensor, audio: np.ndarray | torch.Tensor
) -> np.ndarray:
    """(P, C, C) float: cosine, in probe p's shared space, of class q's audio vector (row q) and
    class c's text (column c). ``audio`` is (C, da) for every probe or (P, C, da), as in
    :func:`train_probes`. Which rows are queries and which columns candidates is the caller's
    choice (:func:`~ausweep.probe.metrics.masked_ranks`)."""
    device = probes.params.w_text.device
    text_t = torch.as_tensor(text, dtype=torch.float32, device=device)
    audio_t = torch.as_tensor(audio, dtype=torch.float32, device=device)
    z_text = probes.embed_text(text_t)  # (P, C, k)
    z_audio = probes.embed_audio(audio_t)  # (P, C, k)
    return torch.bmm(z_audio, z_text.transpose(1, 2)).cpu().numpy()
