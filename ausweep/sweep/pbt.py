"""Population-based training (PBT), declared in a sweep file's ``tune.scheduler``.

PBT trains a population of trials at once. Every ``perturbation_interval`` epochs each trial saves a
checkpoint and the population is ranked on ``tune.metric`` (a validation or dev metric); a trial in
the bottom ``quantile_fraction`` *exploits* one in the top: it takes over that trial's checkpoint
(weights, optimiser, schedule, epoch) and config, then *explores*: the keys of
``hyperparam_mutations`` are perturbed (a number times one of ``perturbation_factors``, a list's value
moved to a neighbour) or, with ``resample_probability``, drawn afresh. Training goes on from the
donor's epoch with the new values (Ray Tune's ``PopulationBasedTraining``)::

    tune:
      metric: dev/acc
      num_samples: 4                       # the population
      scheduler:
        name: pbt
        perturbation_interval: 2           # epochs between perturbations (and checkpoints)
        hyperparam_mutations:
          train.lr: {loguniform: [1.0e-5, 1.0e-3]}
          train.weight_decay: [0.0, 0.001, 0.01, 0.1]

A mutation is ``{loguniform|uniform|randint: [low, high]}`` (perturbed by a factor, resampled from the
range) or a list of values, also written ``{choice: [...]}`` (moved to a neighbouring value, resampled
from the list). Only keys the study applies to a restored trial can be mutated (its ``mutable_keys``:
for AudioBERT the learning rate, weight decay and gradient clipping); keys that set the shapes of the
checkpointed weights (its ``shape_keys``: the LoRA rank, its target modules) never can. Since an exploit
copies the donor's whole config, a searched key that PBT does not mutate would not stay with its trial:
the search space may sample only mutated keys (their initial values), and everything else is shared by
the population.

``name: pb2`` is PB2 (Parker-Holder et al., 2020; Ray Tune's ``PB2``): the same checkpoints and
exploits, but the new values come from a Gaussian-process bandit over the population's recent
improvements, within the ``{uniform|loguniform: [low, high]}`` ranges of ``hyperparam_mutations`` (on a
linear scale; ``resample_probability``, ``perturbation_factors`` and ``burn_in_period`` do not apply).
"""

from __future__ import annotations

from typing import Any

from ausweep.config import ConfigError, unflatten

POPULATION = ("pbt", "pb2")  # the schedulers that copy checkpoints between trials
PBT_FIELDS = ("perturbation_interval", "burn_in_period", "hyperparam_mutations", "quantile_fraction",
              "resample_probability", "perturbation_factors", "synch")
RANGES = ("uniform", "loguniform", "randint")
LISTS = ("choice", "grid")


def parse_mutation(value: Any, where: str, field: str) -> tuple[str, list[Any]]:
    """``(kind, args)``: ``("list", values)`` or ``(range kind, [low, high])``; a ConfigError otherwise."""
    if isinstance(value, list):
        value = {"choice": value}
    if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in RANGES + LISTS):
        raise ConfigError(where, field, f"expected a list of values or one of {{{', '.join(RANGES + LISTS)}: [...]}}, "
                                        f"got {value!r} (keys are dotted config keys, e.g. train.lr)")
    (kind, args), = value.items()
    if not isinstance(args, list) or not args:
        raise ConfigError(where, f"{field}.{kind}", "expected a non-empty list")
    if kind in LISTS:
        return "list", args
    if len(args) != 2:
        raise ConfigError(where, f"{field}.{kind}", "expected [low, high]")
    try:
        lo, hi = (float(a) for a in args)
    except (TypeError, ValueError):
        raise ConfigError(where, f"{field}.{kind}", f"expected numbers, got {args!r}") from None
    if not lo < hi:
        raise ConfigError(where, f"{field}.{kind}", "low must be below high")
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(where, f"{field}.{kind}", "loguniform needs low > 0")
    return kind, [int(lo), int(hi)] if kind == "randint" else [lo, hi]


def check_pbt(scheduler: Any, search_name: str, space: dict[str, dict[str, Any]], where: str) -> None:
    """ConfigError (naming ``where`` and the field) for a PBT setting that cannot run, or a search
    space whose trials PBT would not keep apart. Non-PBT schedulers must not set PBT's mutations."""
    f = "tune.scheduler"
    if scheduler.name not in POPULATION:
        if scheduler.hyperparam_mutations:
            raise ConfigError(where, f"{f}.hyperparam_mutations", f"only population-based training mutates "
                              f"hyperparameters (name: pbt), not {scheduler.name!r}")
        return
    if not scheduler.hyperparam_mutations:
        raise ConfigError(where, f"{f}.hyperparam_mutations", "PBT needs at least one key to mutate, "
                          "e.g. {train.lr: {loguniform: [1.0e-5, 1.0e-3]}}")
    mutations = scheduler.hyperparam_mutations
    for key, value in mutations.items():
        kind, _ = parse_mutation(value, where, f"{f}.hyperparam_mutations.{key}")
        if scheduler.name == "pb2" and kind not in ("uniform", "loguniform"):
            raise ConfigError(where, f"{f}.hyperparam_mutations.{key}", "PB2 searches continuous bounds: give "
                              "{uniform: [low, high]} or {loguniform: [low, high]} (name: pbt also takes lists)")
    if scheduler.name == "pb2":
        try:
            import sklearn  # noqa: F401 -- PB2's Gaussian process
        except ImportError:
            raise ConfigError(where, "tune.scheduler.name", "PB2 needs the 'scikit-learn' package, which is not "
                              "installed: pip install scikit-learn (or use name: pbt)") from None
    if search_name != "random":
        raise ConfigError(where, "tune.search.name", f"PBT chooses each trial's next values itself; it runs with "
                          f"name: random (the initial population), not {search_name!r}")
    unmutated = sorted(k for k in space if k not in mutations)
    if unmutated:
        raise ConfigError(where, f"search_space.{unmutated[0]}", "PBT copies a better trial's whole config into a "
                          "worse one, so a searched key that it does not mutate would not stay with its trial: "
                          "fix it (one population per value, e.g. one sweep per task), or add it to "
                          f"{f}.hyperparam_mutations if it can change mid-training")


def check_pbt_study(scheduler: Any, study: Any, where: str) -> None:
    """ConfigError unless ``study`` restores checkpoints and applies every mutated key to them."""
    f = "tune.scheduler.hyperparam_mutations"
    if not study.mutable_keys:
        raise ConfigError(where, "tune.scheduler.name", f"study '{study.name}' cannot restore a trial from another "
                          "trial's checkpoint, which population-based training does")
    for key in scheduler.hyperparam_mutations:
        if key in study.shape_keys or any(key.startswith(s + ".") or s.startswith(key + ".") for s in study.shape_keys):
            raise ConfigError(where, f"{f}.{key}", f"'{key}' sets the shapes of the weights a checkpoint holds, and "
                              "PBT copies weights between trials: a population shares it (one sweep per value)")
        if key not in study.mutable_keys:
            raise ConfigError(where, f"{f}.{key}", f"study '{study.name}' applies only "
                              f"{', '.join(study.mutable_keys)} to a restored trial; '{key}' cannot change mid-training")


def tune_mutations(mutations: dict[str, Any]) -> dict[str, Any]:
    """Ray Tune's nested ``hyperparam_mutations`` (lists and search-space domains) from the sweep file's."""
    from ray import tune

    makers = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}
    flat = {}
    for key, value in mutations.items():
        kind, args = parse_mutation(value, "", key)
        flat[key] = list(args) if kind == "list" else makers[kind](*args)
    return unflatten(flat)


def make_pbt(scheduler: Any, seed: int) -> Any:
    """The Tune scheduler (:class:`ausweep.sweep.schedulers.CheckpointedPBT`, or ``CheckpointedPB2``) for a
    ``pbt`` (``pb2``) SchedulerSpec; it ranks on the TuneConfig's metric and mode."""
    s = scheduler
    if s.name == "pb2":
        from ausweep.sweep.schedulers import CheckpointedPB2

        bounds = unflatten({k: parse_mutation(v, "", k)[1] for k, v in s.hyperparam_mutations.items()})
        return CheckpointedPB2(time_attr="training_iteration", perturbation_interval=s.perturbation_interval,
                               hyperparam_bounds=bounds, quantile_fraction=s.quantile_fraction, synch=s.synch, seed=seed)
    from ausweep.sweep.schedulers import CheckpointedPBT

    return CheckpointedPBT(
        time_attr="training_iteration", perturbation_interval=s.perturbation_interval,
        burn_in_period=s.burn_in_period, hyperparam_mutations=tune_mutations(s.hyperparam_mutations),
        quantile_fraction=s.quantile_fraction, resample_probability=s.resample_probability,
        perturbation_factors=tuple(s.perturbation_factors), synch=s.synch, seed=seed,
    )
