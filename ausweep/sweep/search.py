"""Search algorithms of a sweep, declared in its file's ``tune.search``: how Tune picks the next trial.

``random`` (the default) draws every sampled axis afresh per trial, crossed with the grid axes.
The model-based searchers that Ray Tune integrates learn from finished trials where to look next:

* ``optuna``: Tree-structured Parzen Estimator (TPE) through Ray Tune's ``OptunaSearch``; with two or
  more ``objectives`` it is Optuna's multi-objective TPE, and the sweep's parent run gets the Pareto front
  (``pareto.csv``, ``pareto.png``);
* ``hyperopt``: HyperOpt's TPE through ``HyperOptSearch``.

A model-based searcher samples every axis itself, so a space with a ``grid`` axis is refused (a ``choice``
lets it choose among the values). A key may be searched only ``when`` another key (a ``choice`` axis) took
one of some values, a conditional space::

    search_space:
      probe.standardize: {choice: [true, false]}
      probe.weight_decay: {loguniform: [1.0e-6, 1.0e-2], when: {probe.standardize: [true]}}

A key whose condition does not hold keeps its base config value. Searchers keep their history of trials
in Tune's experiment state, so ``--resume`` continues the same search (Tune restores the searcher).
"""

from __future__ import annotations

import copy
import csv
import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ausweep.config import ConfigError, option

SEARCHERS = ("random", "optuna", "hyperopt")
MODEL_BASED = ("optuna", "hyperopt")
PACKAGES = {"optuna": "optuna", "hyperopt": "hyperopt"}
PARETO_CSV, PARETO_PNG = "pareto.csv", "pareto.png"
BRANCH = "__when__:"  # HyperOpt space keys holding one branch of a conditional choice


@dataclass(frozen=True)
class Objective:
    metric: str = option(help="Result key to optimise (its final value per trial).")
    mode: Literal["max", "min"] = option("max", help="Whether a larger or a smaller value is better.")
    cost: bool = option(False, help="A property of the configuration measured on no data (trainable parameters, "
                                    "seconds): exempt from the rule that objectives are validation or dev metrics.")


@dataclass(frozen=True)
class SearchSpec:
    name: Literal["random", "optuna", "hyperopt"] = option(
        "random", help="'random' draws sampled axes afresh (crossed with grids); 'optuna' (TPE) and 'hyperopt' (TPE) "
                       "learn from finished trials where to sample next (no grid axes; pip install 'ausweep[search]').")
    seed: int | None = option(None, help="Seed of the searcher; default tune.seed.")
    max_concurrent: int | None = option(
        None, help="Model-based searchers: suggestions out at once (Ray Tune's ConcurrencyLimiter). A searcher "
                   "learns only from finished trials, so fewer at once means better-informed suggestions.")
    n_startup_trials: int = option(10, help="Model-based searchers: random trials before the model is used "
                                            "(Optuna's n_startup_trials, HyperOpt's n_initial_points).")
    objectives: list[Objective] = option(
        [], help="Optuna only: two or more objectives for multi-objective TPE (e.g. dev accuracy up, trainable "
                 "parameters down); tune.metric must be one of them. The Pareto front goes to the parent run.")

    def __post_init__(self) -> None:
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        if self.n_startup_trials < 1:
            raise ValueError("n_startup_trials must be >= 1")
        if self.objectives and self.name != "optuna":
            raise ValueError(f"objectives (multi-objective search) need name: optuna, not {self.name!r}")
        if len(self.objectives) == 1:
            raise ValueError("objectives: give two or more (one objective is tune.metric and tune.mode)")
        metrics = [o.metric for o in self.objectives]
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"objectives name a metric twice: {metrics}")
        if self.max_concurrent is not None and self.name == "random":
            raise ValueError("max_concurrent limits a model-based searcher; random search: set tune.max_concurrent_trials")

    @property
    def model_based(self) -> bool:
        return self.name in MODEL_BASED


# ----------------------------------------------------------------------------- validation


def check_search(search: SearchSpec, metric: str, mode: str, space: dict[str, dict[str, Any]],
                 conditions: dict[str, dict[str, list[Any]]], where: str, is_selection_metric: Any) -> None:
    """ConfigError (naming ``where`` and the field) for a searcher that cannot run this space."""
    for key, cond in conditions.items():
        f = f"search_space.{key}.when"
        if not search.model_based:
            raise ConfigError(where, f, "a conditional key needs a model-based searcher (tune.search.name: optuna or hyperopt)")
        if len(cond) != 1:
            raise ConfigError(where, f, "name exactly one key, e.g. {probe.standardize: [true]}")
        (parent, values), = cond.items()
        pdist = space.get(parent)
        if pdist is None or next(iter(pdist)) != "choice" or parent in conditions:
            raise ConfigError(where, f, f"'{parent}' must be a choice axis of the search space without a condition of its own")
        unknown = [v for v in values if v not in pdist["choice"]]
        if unknown:
            raise ConfigError(where, f, f"{unknown} not among the values of {parent}: {pdist['choice']}")
    if not search.model_based:
        return
    grids = sorted(k for k, d in space.items() if next(iter(d)) == "grid")
    if grids:
        raise ConfigError(where, "tune.search.name", f"{search.name!r} samples every axis itself, and "
                          f"search_space.{grids[0]} is a grid; give it as {{choice: [...]}} to let the searcher "
                          "choose, fix it to one value, or use name: random for a grid")
    if not space:
        raise ConfigError(where, "tune.search.name", f"{search.name!r} has nothing to search: no sampled axis in search_space")
    if search.objectives:
        names = [o.metric for o in search.objectives]
        if metric not in names:
            raise ConfigError(where, "tune.search.objectives", f"tune.metric '{metric}' must be one of the objectives {names}")
        if next(o for o in search.objectives if o.metric == metric).mode != mode:
            raise ConfigError(where, "tune.search.objectives", f"the objective '{metric}' must have tune.mode ({mode})")
        for i, o in enumerate(search.objectives):
            if not o.cost and not is_selection_metric(o.metric):
                raise ConfigError(where, f"tune.search.objectives.{i}.metric",
                                  f"'{o.metric}' names no validation or dev split; a searcher optimises only metrics "
                                  "computed on val/dev data (or cost: true for a property measured on no data)")
    require_package(search.name, where)


def require_package(name: str, where: str) -> None:
    """ConfigError naming the sweep file when searcher ``name``'s package cannot be imported."""
    package = PACKAGES.get(name)
    if package is None:
        return
    try:
        importlib.import_module(package)
    except ImportError:
        raise ConfigError(where, "tune.search.name", f"the {name!r} searcher needs the '{package}' package, which is not "
                          f"installed: pip install 'ausweep[search]' (or pip install {package})") from None


# ----------------------------------------------------------------------------- the searchers


def _ordered(space: dict[str, dict[str, Any]], conditions: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Unconditional keys first, so a condition's key is sampled before the keys it guards."""
    return sorted(space.items(), key=lambda kv: kv[0] in conditions)


def _primitive(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


class OptunaSpace:
    """Optuna define-by-run space for an ausweep search space (picklable: Tune saves it with the searcher).

    Parameter names are the dotted keys with '/' (Ray Tune unflattens '/' into the nested config).
    A choice among values Optuna cannot store (lists, mappings) is suggested as an index.
    """

    def __init__(self, space: dict[str, dict[str, Any]], conditions: dict[str, dict[str, list[Any]]]):
        self.order = _ordered(space, conditions)
        self.conditions = conditions

    def __call__(self, trial: Any) -> dict[str, Any] | None:
        chosen: dict[str, Any] = {}
        fixed: dict[str, Any] = {}
        for key, dist in self.order:
            cond = self.conditions.get(key, {})
            if not all(chosen.get(p) in values for p, values in cond.items()):
                continue
            name = key.replace(".", "/")
            (kind, args), = dist.items()
            if kind == "choice":
                if all(_primitive(v) for v in args):
                    value = trial.suggest_categorical(name, args)
                else:
                    value = args[trial.suggest_categorical(name, list(range(len(args))))]
                    fixed[name] = value
            elif kind == "randint":
                value = trial.suggest_int(name, args[0], args[1] - 1)  # [low, high) like tune.randint
            else:
                value = trial.suggest_float(name, args[0], args[1], log=kind == "loguniform")
            chosen[key] = value
        return fixed or None


def hyperopt_space(space: dict[str, dict[str, Any]], conditions: dict[str, dict[str, list[Any]]]) -> dict[str, Any]:
    """A HyperOpt space: flat dotted keys; a choice that other keys depend on becomes a choice among
    branches, each holding the choice's value and the keys searched under it."""
    from hyperopt import hp

    def expr(key: str, dist: dict[str, Any]) -> Any:
        (kind, args), = dist.items()
        if kind == "choice":
            return hp.choice(key, args)
        if kind == "randint":
            return hp.randint(key, args[0], args[1])
        if kind == "loguniform":
            return hp.loguniform(key, math.log(args[0]), math.log(args[1]))
        return hp.uniform(key, args[0], args[1])

    parents = {p for cond in conditions.values() for p in cond}
    out: dict[str, Any] = {}
    for key, dist in space.items():
        if key in conditions or key in parents:
            continue
        out[key] = expr(key, dist)
    for parent in sorted(parents):
        children = {k: expr(k, space[k]) for k, c in conditions.items() if parent in c}
        branches = [{parent: v, **{k: e for k, e in children.items() if v in conditions[k][parent]}}
                    for v in space[parent]["choice"]]
        out[BRANCH + parent] = hp.choice(parent, branches)
    return out


def make_search_alg(search: SearchSpec, metric: str, mode: str, seed: int, base: dict[str, Any],
                    space: dict[str, dict[str, Any]], conditions: dict[str, dict[str, list[Any]]]) -> tuple[Any, dict[str, Any]]:
    """``(search_alg, param_space)`` for the Tuner. ``random``: Tune's BasicVariantGenerator (None for a
    pure grid) over the full config with distributions at the swept leaves. Model-based: the searcher,
    and the base config without the keys it always sets (a conditional key keeps its base value)."""
    from ausweep.sweep.spec import to_tune_space

    if not search.model_based:
        alg = None
        if any(next(iter(d)) != "grid" for d in space.values()):
            from ray.tune.search.basic_variant import BasicVariantGenerator

            alg = BasicVariantGenerator(random_state=seed if search.seed is None else search.seed)
        return alg, to_tune_space(base, space)
    seed = seed if search.seed is None else search.seed
    searcher = _optuna(search, metric, mode, seed, space, conditions) if search.name == "optuna" else \
        _hyperopt(search, metric, mode, seed, space, conditions)
    if search.max_concurrent is not None:
        from ray.tune.search import ConcurrencyLimiter

        searcher = ConcurrencyLimiter(searcher, max_concurrent=search.max_concurrent)
    param_space = copy.deepcopy(base)
    for key in space:
        if key not in conditions:
            _pop_dotted(param_space, key)
    return searcher, param_space


def _pop_dotted(d: dict[str, Any], key: str) -> None:
    *path, last = key.split(".")
    for p in path:
        d = d.get(p)
        if not isinstance(d, dict):
            return
    d.pop(last, None)


def _optuna(search: SearchSpec, metric: str, mode: str, seed: int, space: dict, conditions: dict) -> Any:
    import optuna

    from ausweep.sweep.searchers import TolerantOptunaSearch

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.n_startup_trials)
    if search.objectives:  # tune.metric first: the one objective Tune checks in every row (see TolerantOptunaSearch)
        objectives = sorted(search.objectives, key=lambda o: o.metric != metric)
        return TolerantOptunaSearch(OptunaSpace(space, conditions), metric=[o.metric for o in objectives],
                                    mode=[o.mode for o in objectives], sampler=sampler)
    return TolerantOptunaSearch(OptunaSpace(space, conditions), metric=metric, mode=mode, sampler=sampler)


def _hyperopt(search: SearchSpec, metric: str, mode: str, seed: int, space: dict, conditions: dict) -> Any:
    from ausweep.sweep.searchers import FlatHyperOptSearch

    return FlatHyperOptSearch(hyperopt_space(space, conditions), metric=metric, mode=mode,
                              n_initial_points=search.n_startup_trials, random_state_seed=seed)


# ----------------------------------------------------------------------------- Pareto front


def pareto_mask(points: list[tuple[float, ...]], modes: list[str]) -> list[bool]:
    """Whether each point is on the Pareto front: no other point is at least as good in every
    objective and better in one (``modes``: 'max' or 'min' per objective)."""
    signs = [1.0 if m == "max" else -1.0 for m in modes]
    pts = [tuple(s * v for s, v in zip(signs, p)) for p in points]

    def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [not any(dominates(q, p) for q in pts) for p in pts]


def write_pareto(rows: list[dict[str, Any]], objectives: list[Objective], swept_keys: list[str], out_dir: Path) -> list[Path]:
    """``pareto.csv`` (every trial with a value for each objective: its swept values, objectives and
    whether it is on the front) and, for two objectives, ``pareto.png``."""
    from ausweep.config import flatten

    names = [o.metric for o in objectives]
    scored = [r for r in rows if all(isinstance(r["metrics"].get(m), (int, float)) and not math.isnan(r["metrics"][m])
                                     for m in names)]
    if not scored:
        return []
    points = [tuple(float(r["metrics"][m]) for m in names) for r in scored]
    front = pareto_mask(points, [o.mode for o in objectives])
    csv_path = out_dir / PARETO_CSV
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*swept_keys, *names, "on_front"])
        for r, p, on in zip(scored, points, front):
            flat = flatten(r["config"])
            w.writerow([flat.get(k, "") for k in swept_keys] + list(p) + [on])
    paths = [csv_path]
    if len(objectives) == 2:
        paths.append(_plot_pareto(points, front, objectives, out_dir / PARETO_PNG))
    return paths


def _plot_pareto(points: list[tuple[float, ...]], front: list[bool], objectives: list[Objective], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The cost (if one is) on x, as usual for accuracy-vs-size plots.
    ix, iy = (0, 1) if objectives[0].cost or not objectives[1].cost else (1, 0)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter([p[ix] for p in points], [p[iy] for p in points], c="0.6", s=18, label="trial")
    on = sorted((p[ix], p[iy]) for p, f in zip(points, front) if f)
    ax.plot([p[0] for p in on], [p[1] for p in on], "o-", c="C3", ms=5, label="Pareto front", drawstyle="steps-post"
            if objectives[ix].mode != objectives[iy].mode else "default")
    if all(p[ix] > 0 for p in points) and max(p[ix] for p in points) > 10 * min(p[ix] for p in points):
        ax.set_xscale("log")
    ax.set_xlabel(f"{objectives[ix].metric} ({objectives[ix].mode})")
    ax.set_ylabel(f"{objectives[iy].metric} ({objectives[iy].mode})")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
