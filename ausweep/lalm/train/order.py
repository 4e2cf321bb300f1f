"""The data order of a training run: which examples each rank sees in each micro-batch, and how
many optimizer steps the run has.

A pure function of (seed, micro-batch index, rank), so a resumed run picks up the data order (and
the dropout masks, seeded with :func:`_mix`) exactly where its checkpoint left it.
"""

from __future__ import annotations

from ausweep.lalm.train.config import TrainConfig


def micro_batches_per_epoch(n_examples: int, micro_batch_size: int, world_size: int) -> int:
    """Global micro-batches (one per rank) in one pass; the last partial one is dropped."""
    return n_examples // (micro_batch_size * world_size)


def total_steps(train_cfg: TrainConfig, n_examples: int, world_size: int) -> int:
    """Optimizer steps of the whole run: ``max_steps``, or the epochs' worth (at least 1)."""
    if train_cfg.max_steps is not None:
        return train_cfg.max_steps
    per_epoch = micro_batches_per_epoch(n_examples, train_cfg.micro_batch_size, world_size)
    return max(1, train_cfg.epochs * per_epoch // train_cfg.grad_accum)


def micro_batch_indices(n_examples: int, micro_index: int, micro_batch_size: int, world_size: int, rank: int,
                        seed: int) -> list[int]:
    """Example indices of global micro-batch ``micro_index`` for ``rank``.

    Micro-batches run on across epochs: epoch ``e`` is a permutation of the examples drawn from
    ``(seed, e)``; its first ``micro_batch_size * world_size`` examples are micro-batch 0, split by
    rank stride, and so on. A pure function of its arguments, so a resumed run picks up the data
    order exactly where the checkpoint left it.
    """
    import torch

    per_epoch = micro_batches_per_epoch(n_examples, micro_batch_size, world_size)
    if per_epoch < 1:
        raise ValueError(
            f"{n_examples} examples are fewer than one global micro-batch "
            f"(micro_batch_size {micro_batch_size} x {world_size} workers)"
        )
    epoch, j = divmod(micro_index, per_epoch)
    order = torch.randperm(n_examples, generator=torch.Generator().manual_seed(_mix(seed, epoch)))
    glob = order[j * micro_batch_size * world_size: (j + 1) * micro_batch_size * world_size]
    return [int(i) for i in glob[rank::world_size]]


def _mix(*ints: int) -> int:
    """One 63-bit seed from several integers (no collisions between (seed, step) pairs in practice)."""
    import numpy as np

    return int(np.random.SeedSequence([int(i) for i in ints]).generate_state(1, dtype=np.uint64)[0] >> 1)
