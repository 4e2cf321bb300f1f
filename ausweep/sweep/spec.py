"""Sweep files: ``sweeps/NAME.yaml`` declares a study, a base config, a search space and Tune settings.

A sweep file looks like::

    # python -m ausweep.sweep probe
    description: Contrastive probe, LM x audio model x layer (Ngo & Kim 2024)
    study: probe                    # a name in the STUDIES registry
    config: ../configs/probe/fsd50k.yaml   # base config, relative to this file
    overrides: {probe.epochs: 300}  # dotted or nested, applied on top of `config`
    search_space:                   # dotted config keys -> a distribution or a fixed value
      text.model: {grid: [bert-base-uncased, gpt2]}
      probe.lr: {loguniform: [1.0e-4, 1.0e-2]}
    tune: {metric: val/acc@1, mode: max, num_samples: 1}
    resources: {cpu: 1, gpu: 0}
    presets:                        # named variants: --preset demo
      demo: {config: ..., search_space: {...}, tune: {...}}

Distributions: ``grid`` (every value, crossed with the other grids), ``choice`` (one value per
sample), ``uniform``/``loguniform`` ``[low, high]``, ``randint`` ``[low, high)``. A plain value fixes
the key. ``num_samples`` repeats the grid, drawing the random axes afresh each time.

``tune.search`` picks the search algorithm: random (the default) or a model-based searcher (``optuna``,
``hyperopt``) that samples ``num_samples`` trials where finished ones did well; a distribution may then
carry ``when: {other.key: [values]}`` (a conditional key). See :mod:`ausweep.sweep.search`.
``tune.scheduler`` stops poor trials early (``asha``) or trains a population whose worse trials take
over the better ones' checkpoints with mutated hyperparameters (``pbt``, :mod:`ausweep.sweep.pbt`).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ausweep.config import ConfigError, deep_merge, flatten, from_dict, load_yaml, option, set_dotted, to_dict, unflatten
from ausweep.files import resources_root
from ausweep.sweep.pbt import check_pbt
from ausweep.sweep.search import SearchSpec, check_search

DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")
# Names of data a metric may be *chosen* on: a metric whose key has one of these as a part separated by
# '/' or '_' (``val_acc@1``, ``dev/acc``, ``pitch/dev/acc``) is computed on validation data, never on
# what a study reports.
SELECTION_SPLITS = ("val", "dev")


def is_selection_metric(metric: str) -> bool:
    """Whether ``metric`` is computed on validation or dev data (see :data:`SELECTION_SPLITS`)."""
    return any(part in SELECTION_SPLITS for part in re.split(r"[/_]", metric))


@dataclass(frozen=True)
class SchedulerSpec:
    name: Literal["fifo", "asha", "pbt", "pb2"] = option("fifo", help="'fifo' runs every trial to the end; 'asha' stops poor trials early; 'pbt' (population-based training, see ausweep.sweep.pbt) has worse trials take over better ones' checkpoints with mutated hyperparameters; 'pb2' is PBT whose new values come from a Gaussian-process bandit over the population's results (Ray Tune's PB2; needs scikit-learn; ranges only).")
    max_t: int = option(100, help="ASHA: the most reports (epochs) a trial gets.")
    grace_period: int = option(1, help="ASHA: reports every trial gets before it can be stopped.")
    reduction_factor: float = option(4.0, help="ASHA: keep 1/reduction_factor of trials at each rung.")
    perturbation_interval: int = option(2, help="PBT: reports (epochs) between two perturbations; a trial saves a checkpoint at each, and only there can it be cloned or paused.")
    burn_in_period: int = option(0, help="PBT: reports (epochs) before a trial's first perturbation.")
    hyperparam_mutations: dict[str, Any] = option({}, help="PBT: dotted config key -> {loguniform|uniform|randint: [low, high]} (perturbed by a factor, or resampled) or a list of values (moved to a neighbour, or resampled); PB2: {uniform|loguniform: [low, high]}, the bounds its bandit searches (on a linear scale). Only keys the study applies to a restored trial (e.g. train.lr, train.weight_decay), never ones that set weight shapes (adapter.lora_r).")
    quantile_fraction: float = option(0.25, help="PBT: the bottom fraction of the population that clones the top fraction (0 < q <= 0.5).")
    resample_probability: float = option(0.25, help="PBT: chance that a mutated key is drawn afresh instead of perturbed.")
    perturbation_factors: list[float] = option([1.2, 0.8], help="PBT: factors a numeric key is multiplied by when perturbed.")
    synch: bool = option(False, help="PBT: perturb the whole population at once, when every trial has reached the interval (trials wait), instead of each trial at its own pace; a clone then goes on exactly where it left off.")

    def __post_init__(self) -> None:
        if self.perturbation_interval < 1 or self.burn_in_period < 0:
            raise ValueError("perturbation_interval must be >= 1 and burn_in_period >= 0")
        if not 0 < self.quantile_fraction <= 0.5:
            raise ValueError(f"quantile_fraction must be in (0, 0.5], got {self.quantile_fraction}")
        if not 0 <= self.resample_probability <= 1:
            raise ValueError(f"resample_probability must be in [0, 1], got {self.resample_probability}")
        if not self.perturbation_factors or any(f <= 0 for f in self.perturbation_factors):
            raise ValueError(f"perturbation_factors must be positive numbers, got {self.perturbation_factors}")


@dataclass(frozen=True)
class TuneSettings:
    metric: str = option("val/acc@1", help="Result key that ranks trials. Where the sweep samples values or stops trials early (ASHA) it must be a validation or dev metric (a `val` or `dev` part in its key).")
    mode: Literal["max", "min"] = option("max", help="Whether a larger or a smaller metric is better.")
    num_samples: int = option(1, help="Repeats of the grid; random axes are drawn afresh per repeat.")
    max_concurrent_trials: int | None = option(None, help="Trials at once; default: as many as the resources allow.")
    max_failures: int = option(2, help="Retries of a trial whose worker dies (FailureConfig).")
    scheduler: SchedulerSpec | None = option(None, help="Trial scheduler; default FIFO.")
    seed: int = option(0, help="Seed of the search algorithm (random axes).")
    search: SearchSpec = option(SearchSpec(), help="Search algorithm: {name: random} (default), or a model-based "
                                                  "searcher {name: optuna|hyperopt, seed, max_concurrent} that samples "
                                                  "num_samples trials where finished ones did well (no grid axes).")

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError("num_samples must be >= 1")
        if self.max_concurrent_trials is not None and self.max_concurrent_trials < 1:
            raise ValueError("max_concurrent_trials must be >= 1")
        if self.scheduler is None:
            object.__setattr__(self, "scheduler", SchedulerSpec())


@dataclass(frozen=True)
class Resources:
    cpu: float = option(1.0, help="CPUs per trial.")
    gpu: float = option(0.0, help="GPUs per trial; fractions let several small trials share one GPU.")

    def __post_init__(self) -> None:
        if self.cpu < 0 or self.gpu < 0:
            raise ValueError("resources must be >= 0")


@dataclass(frozen=True)
class Preset:
    description: str = option("", help="What the preset is for.")
    config: str | None = option(None, help="Base config file replacing the sweep's, relative to the sweep file.")
    overrides: dict[str, Any] = option({}, help="Config values applied after the sweep's overrides.")
    search_space: dict[str, Any] | None = option(None, help="Replaces the sweep's whole search space.")
    tune: dict[str, Any] = option({}, help="Merged into the sweep's tune settings.")
    resources: dict[str, Any] = option({}, help="Merged into the sweep's resources.")


@dataclass(frozen=True)
class SweepSpec:
    study: str = option(help="Which study a trial runs (see `python -m ausweep ls`).")
    description: str = option("", help="One line shown by `--list`.")
    config: str | None = option(None, help="Base config YAML, relative to the sweep file.")
    overrides: dict[str, Any] = option({}, help="Config values on top of the base config (dotted or nested keys).")
    search_space: dict[str, Any] = option({}, help="Dotted config key -> distribution or fixed value.")
    tune: TuneSettings = option(None, help="Ray Tune settings.")  # type: ignore[assignment]
    resources: Resources = option(None, help="Resources per trial.")  # type: ignore[assignment]
    presets: dict[str, Preset] = option({}, help="Named variants selected with --preset.")
    storage_path: str | None = option(None, help="Where Tune keeps trial state; default $AUSWEEP_STORAGE or ./ausweep_runs. Shared storage on a cluster.")

    def __post_init__(self) -> None:
        if self.tune is None:
            object.__setattr__(self, "tune", TuneSettings())
        if self.resources is None:
            object.__setattr__(self, "resources", Resources())


@dataclass(frozen=True)
class Sweep:
    """A sweep file resolved for one run: preset applied, base config merged, space validated."""

    name: str  # file stem, e.g. "probe"
    path: Path
    spec: SweepSpec
    preset: str | None
    base: dict[str, Any]  # nested config dict (defaults come from the study's dataclass)
    space: dict[str, dict[str, Any]]  # dotted key -> {distribution: args}
    conditions: dict[str, dict[str, list[Any]]] = dataclasses.field(default_factory=dict)  # key -> {choice key: values}

    @property
    def run_label(self) -> str:
        return f"{self.name}-{self.preset}" if self.preset else self.name

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid axes (dotted -> value); random axes take their low value.
        Used to validate configs and plan extraction before any trial starts."""
        axes = []
        for key, dist in self.space.items():
            (kind, args), = dist.items()
            if args == "all":  # expanded by the study once it knows the model (e.g. its depth)
                continue
            values = args if kind in ("grid", "choice") else [args[0]]
            axes.append([(key, v) for v in values])
        return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]

    def config_dicts(self) -> list[dict[str, Any]]:
        return [deep_merge(self.base, unflatten(p)) for p in self.grid_points()]

    def n_trials(self) -> int:
        """Trials the sweep will run (a ``{grid: all}`` axis counts once until the study expands it)."""
        return count_trials(self.space, self.spec.tune.num_samples)


def count_trials(space: dict[str, dict[str, Any]], num_samples: int) -> int:
    n = num_samples
    for dist in space.values():
        (kind, args), = dist.items()
        n *= len(args) if kind == "grid" and args != "all" else 1
    return n


# ----------------------------------------------------------------------------- finding and loading


def sweeps_dirs() -> list[Path]:
    """Where sweep names are looked up: $AUSWEEP_SWEEPS, ./sweeps, then ausweep's own sweeps/ (the
    checkout's, or the copy an installed wheel carries)."""
    dirs = []
    if os.environ.get("AUSWEEP_SWEEPS"):
        dirs.append(Path(os.environ["AUSWEEP_SWEEPS"]))
    dirs.append(Path.cwd() / "sweeps")
    dirs.append(resources_root() / "sweeps")
    seen, out = set(), []
    for d in dirs:
        r = d.resolve()
        if r not in seen and r.is_dir():
            seen.add(r)
            out.append(r)
    return out


def find_sweep(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or os.sep in name:
        if not p.is_file():
            raise ConfigError(str(p), "", "sweep file not found")
        return p.resolve()
    for d in sweeps_dirs():
        for ext in (".yaml", ".yml"):
            if (d / f"{name}{ext}").is_file():
                return (d / f"{name}{ext}").resolve()
    from ausweep.registry import UnknownNameError

    raise UnknownNameError("sweep", name, [n for n, _ in list_sweeps()])


def list_sweeps() -> list[tuple[str, str]]:
    """(name, description) of every sweep file, for ``--list``."""
    out = {}
    for d in sweeps_dirs():
        for p in sorted(d.glob("*.y*ml")):
            if p.stem in out:
                continue
            try:
                raw = load_yaml(p)
                desc = (str(raw.get("description", "")).strip().splitlines() or [""])[0]
                presets = raw.get("presets") or {}
                out[p.stem] = desc + (f"  [presets: {', '.join(presets)}]" if presets else "")
            except ConfigError as e:
                out[p.stem] = f"(invalid: {e})"
    return sorted(out.items())


def load_sweep(name: str, preset: str | None = None, overrides: dict[str, Any] | None = None) -> Sweep:
    """Resolve sweep ``name`` (a name in sweeps/ or a path) with ``preset`` and CLI ``overrides``.

    CLI overrides win over everything; an override of a searched key fixes that key.
    """
    path = find_sweep(name)
    where = str(path)
    raw = load_yaml(path)
    spec = from_dict(SweepSpec, raw, where=where)
    config_file, extra, space = spec.config, dict(spec.overrides), dict(spec.search_space)
    tune_d, res_d = to_dict(spec.tune), to_dict(spec.resources)
    if preset is not None:
        if preset not in spec.presets:
            raise ConfigError(where, "presets", f"no preset '{preset}' (presets: {', '.join(spec.presets) or 'none'})")
        p = spec.presets[preset]
        config_file = p.config or config_file
        extra = deep_merge(_nested(extra), _nested(p.overrides))
        space = dict(p.search_space) if p.search_space is not None else space
        tune_d = deep_merge(tune_d, p.tune)
        res_d = deep_merge(res_d, p.resources)
    # `tune.*` and `resources.*` on the command line set the sweep's own settings, not the trial config
    cli = dict(overrides or {})
    cli_tune, cli_res = cli.pop("tune", None), cli.pop("resources", None)
    for key, value in (("tune", cli_tune), ("resources", cli_res)):
        if value is not None and not isinstance(value, dict):
            raise ConfigError("command line", key, f"set single settings, e.g. {key}.{'max_concurrent_trials' if key == 'tune' else 'gpu'}=1")
    tune_settings = from_dict(TuneSettings, deep_merge(tune_d, cli_tune or {}), where=f"{where} (tune)" + (", command line" if cli_tune else ""))
    resources = from_dict(Resources, deep_merge(res_d, cli_res or {}), where=f"{where} (resources)" + (", command line" if cli_res else ""))
    spec = dataclasses.replace(spec, tune=tune_settings, resources=resources)

    base: dict[str, Any] = {}
    if config_file:
        cpath = (path.parent / config_file).resolve()
        base = _nested(load_yaml(cpath))
    base = deep_merge(base, _nested(extra))
    base = deep_merge(base, cli)
    fixed = set(flatten(cli))
    parsed_space, conditions = {}, {}
    for key, value in space.items():
        if key in fixed:
            continue
        value, when = _split_when(value, where, key)
        dist = _parse_dist(value, where, key)
        if dist is None:
            if when is not None:
                raise ConfigError(where, f"search_space.{key}.when", "only a distribution can be conditional")
            base = deep_merge(base, unflatten({key: value}))
        else:
            parsed_space[key] = dist
            if when is not None:
                conditions[key] = when
    # A condition on a key fixed on the command line holds or not for every trial: the key is then
    # searched unconditionally, or not at all (it keeps its base value).
    flat_base = flatten(base)
    for key, cond in list(conditions.items()):
        parent = next(iter(cond))
        if len(cond) == 1 and parent in fixed:
            del conditions[key]
            if flat_base.get(parent) not in cond[parent]:
                del parsed_space[key]
    label = f"{where}" + (f" (preset {preset})" if preset else "")
    _check_selection(spec.tune, parsed_space, label)
    check_pbt(spec.tune.scheduler, spec.tune.search.name, parsed_space, label)
    check_search(spec.tune.search, spec.tune.metric, spec.tune.mode, parsed_space, conditions, label, is_selection_metric)
    return Sweep(path.stem, path, spec, preset, base, parsed_space, conditions)


def _split_when(value: Any, where: str, key: str) -> tuple[Any, dict[str, list[Any]] | None]:
    """``{loguniform: [..], when: {k: [v, ..]}}`` -> (the distribution, ``{k: [v, ..]}``); a single value is a list of one."""
    if not (isinstance(value, dict) and "when" in value and len(value) == 2):
        return value, None
    value = dict(value)
    when = value.pop("when")
    if not isinstance(when, dict) or not when:
        raise ConfigError(where, f"search_space.{key}.when", "expected {key: [values]}, e.g. {probe.standardize: [true]}")
    return value, {str(k): list(v) if isinstance(v, list) else [v] for k, v in when.items()}


def _check_selection(tune: TuneSettings, space: dict[str, dict[str, Any]], where: str) -> None:
    """A sweep that searches (random or sampled axes) or stops trials early (ASHA) chooses among trials
    by ``tune.metric``: that metric must be computed on validation or dev data, never on held-out data."""
    sampled = sorted(k for k, d in space.items() if next(iter(d)) != "grid")
    early_stop = tune.scheduler is not None and tune.scheduler.name != "fifo"
    if (sampled or early_stop) and not is_selection_metric(tune.metric):
        why = f"{tune.scheduler.name.upper()} ranks trials by it" if early_stop else f"it picks among sampled values of {', '.join(sampled)}"
        raise ConfigError(where, "tune.metric", f"'{tune.metric}' names no validation or dev split ({why}); "
                          f"select on a metric with a '{SELECTION_SPLITS[0]}' or '{SELECTION_SPLITS[1]}' part, "
                          "e.g. val/acc@1 or pitch/dev/acc")


def _nested(d: dict[str, Any]) -> dict[str, Any]:
    """Accept both nested and dotted keys in override mappings."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out = deep_merge(out, unflatten({k: v}) if "." in k else {k: v})
    return out


def _parse_dist(value: Any, where: str, key: str) -> dict[str, Any] | None:
    """{grid: [...]} etc. -> normalised dict; a plain value -> None (a fixed setting)."""
    if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS):
        if isinstance(value, dict) and any(k in DISTRIBUTIONS for k in value):
            raise ConfigError(where, f"search_space.{key}", f"give exactly one of {', '.join(DISTRIBUTIONS)}")
        if isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())), list):
            raise ConfigError(where, f"search_space.{key}", f"unknown distribution '{next(iter(value))}' (known: {', '.join(DISTRIBUTIONS)})")
        return None
    (kind, args), = value.items()
    f = f"search_space.{key}.{kind}"
    if kind in ("grid", "choice"):
        if args == "all":  # study-specific expansion (every layer of an LM)
            return {kind: "all"}
        if not isinstance(args, list) or not args:
            raise ConfigError(where, f, "expected a non-empty list of values")
        return {kind: args}
    if not (isinstance(args, list) and len(args) == 2):
        raise ConfigError(where, f, "expected [low, high]")
    try:
        lo, hi = (float(a) for a in args)
    except (TypeError, ValueError):
        raise ConfigError(where, f, f"expected numbers, got {args!r}") from None
    if not lo < hi:
        raise ConfigError(where, f, "low must be below high")
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(where, f, "loguniform needs low > 0")
    if kind == "randint":
        return {kind: [int(lo), int(hi)]}
    return {kind: [lo, hi]}


def to_tune_space(base: dict[str, Any], space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Tune ``param_space``: the full nested config with distributions at the swept leaves,
    so every trial's ``config`` is its complete, resolved config."""
    from ray import tune

    makers = {
        "grid": tune.grid_search,
        "choice": tune.choice,
        "uniform": lambda a: tune.uniform(*a),
        "loguniform": lambda a: tune.loguniform(*a),
        "randint": lambda a: tune.randint(*a),
    }
    out = copy.deepcopy(base)
    for key, dist in space.items():
        (kind, args), = dist.items()
        set_dotted(out, key, makers[kind](args))
    return out
