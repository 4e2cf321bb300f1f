"""A training run saved at an epoch's end and resumed in another model (what population-based training
does when a trial takes over a better one's checkpoint): with the same settings the resumed run is the
uninterrupted one, bit for bit; with a new learning rate or weight decay the optimiser takes the new
values at the same point of the schedule, and the weights, moments and best epoch carry over."""

from __future__ import annotations

import math

import pytest
import torch

from ausweep.audiobert.config import TrainConfig
from ausweep.audiobert.train import (
    STATE_FILE,
    fit_epochs,
    load_training_state,
    save_training_state,
    trainable_state_dict,
)


class _Net(torch.nn.Module):
    """Per-token classifier with dropout (so the RNG state matters) over a frozen embedding, the same
    in every model (the pretrained part); ``seed`` draws the trainable head."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(12, 6)
        self.emb.weight.requires_grad_(False)
        torch.manual_seed(seed)
        self.drop = torch.nn.Dropout(0.3)
        self.head = torch.nn.Linear(6, 4)

    def forward(self, input_ids):
        return self.head(self.drop(self.emb(input_ids)))


def _data():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 12, (40, 5), generator=g)
    return {"input_ids": ids, "labels": ids % 4}


def _drain(epochs):
    rows = []
    while True:
        try:
            rows.append(next(epochs))
        except StopIteration as done:
            return rows, done.value


def _cfg(**kw):
    return TrainConfig(**{"lr": 0.05, "epochs": 5, "batch_size": 8, "warmup_ratio": 0.2, "seed": 3, **kw})


def _eval(scores):
    it = iter(scores)
    return lambda m: {"acc": next(it)}


def test_resumed_run_equals_the_uninterrupted_one(tmp_path):
    data, cfg = _data(), _cfg()
    dev = [0.2, 0.6, 0.4, 0.5, 0.3]  # best at epoch 1: before the checkpoint, so the best state must travel with it
    straight = _Net(seed=0)
    rows, result = _drain(fit_epochs(straight, data, cfg, eval_fn=_eval(dev)))

    first = _Net(seed=0)
    epochs = fit_epochs(first, data, cfg, eval_fn=_eval(dev))
    for _ in range(3):
        row = next(epochs)
    path = save_training_state(row.training_state(), tmp_path / "ckpt")
    epochs.close()
    assert sorted(p.name for p in path.parent.iterdir()) == [STATE_FILE]  # written atomically: no temp file left

    other = _Net(seed=99)  # another trial's model: other initial weights, replaced by the state's
    resumed_rows, resumed = _drain(fit_epochs(other, data, cfg, eval_fn=_eval(dev[3:]), resume=load_training_state(path)))
    assert [r["epoch"] for r in resumed_rows] == [3.0, 4.0]  # it goes on at the next epoch
    assert resumed_rows == rows[3:]  # same losses, same learning rates: same batches, dropout masks, moments
    assert resumed.history == result.history and (resumed.best_epoch, resumed.best_metric) == (1, 0.6)
    straight_w, resumed_w = trainable_state_dict(straight), trainable_state_dict(other)
    assert all(torch.equal(straight_w[n], resumed_w[n]) for n in straight_w)  # the best (epoch 1) weights, restored


def test_a_resumed_run_takes_its_own_learning_rate_and_weight_decay(tmp_path):
    data, cfg = _data(), _cfg()
    donor = _Net(seed=0)
    epochs = fit_epochs(donor, data, cfg)
    row = next(epochs)
    state = row.training_state()
    save_training_state(state, tmp_path)
    epochs.close()
    state = load_training_state(tmp_path)
    steps = state["scheduler"]["last_epoch"]
    assert steps == 5  # 40 examples / 8 per batch, one epoch

    new = _cfg(lr=0.2, weight_decay=0.3)
    model = _Net(seed=7)
    resumed = fit_epochs(model, data, new, resume=state)
    first = next(resumed)
    run = resumed.gi_frame.f_locals["run"]  # the suspended generator's optimiser, after epoch 1
    group = run.optimizer.param_groups[0]
    # the schedule at step 10 of 25 (warm-up 5): cosine decay a quarter of the way, times the new base rate
    factor = 0.5 * (1 + math.cos(math.pi * (10 - 5) / (25 - 5)))
    assert first["epoch"] == 1.0 and first["lr"] == pytest.approx(0.2 * factor) and group["lr"] == pytest.approx(0.2 * factor)
    assert group["weight_decay"] == 0.3 and group["initial_lr"] == 0.2
    # the donor's Adam moments came along: the optimiser stepped on from the donor's 5 steps
    assert [int(s["step"]) for s in run.optimizer.state.values()] == [steps + 5, steps + 5]
    resumed.close()


def test_a_state_does_not_restore_into_a_model_of_another_shape(tmp_path):
    data, cfg = _data(), _cfg(epochs=2)
    epochs = fit_epochs(_Net(seed=0), data, cfg)
    state = next(epochs).training_state()
    epochs.close()

    class Wider(_Net):
        def __init__(self):
            super().__init__(seed=0)
            self.head = torch.nn.Linear(6, 5)

    with pytest.raises(ValueError, match=r"head\.weight is \(4, 6\) in the state, \(5, 6\) in the model"):
        next(fit_epochs(Wider(), {"input_ids": data["input_ids"], "labels": data["labels"] % 4}, cfg, resume=state))
