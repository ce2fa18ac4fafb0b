"""Reproducible sampling: every trial's parameters and pruning decisions are a function of
the run's seed, the model and the trial's *slot*, never of timing.

A slot is a trial's place in the search of its model: 0, 1, 2, ... in the order trials
are asked. A trial killed with its process (left RUNNING in ``study.journal``, then marked FAIL
without an error) gives its slot back: the next process asks that slot again, and so
samples what the killed trial had. A trial that failed with an error keeps its slot
(asking the same again would fail again).

- **Seeding by slot**: before a trial is sampled, the TPE sampler's random states are
  reseeded from ``(seed, model, slot)`` through a :class:`numpy.random.SeedSequence`, so
  neighbouring seeds share nothing (before, TPE was seeded ``seed`` for LONG and
  ``seed + 1`` for SHORT: seed ``s + 1``'s LONG search replayed seed ``s``'s SHORT one).
- **A fixed history**: with ``p`` trials at once, slot ``k`` is sampled from the finished
  trials of slots ``0 .. k - p`` only, and waits until they are all finished; the trials
  in between, running or not, are hidden from the sampler. Which trials it learns from
  is then the same in every run, whatever finished first, and across a resume.
- **Pruning from the same history**: the bar a trial is pruned against (successive
  halving: the best third of the running means after as many folds) is taken, when the
  trial is asked, from the finished trials among those it was sampled from.
- **A warm start** (:mod:`tjtrainer.warmstart`): the first slots are given parameters
  (an earlier version's best trials) instead of sampled ones; their seeds and history
  rules are the same, so everything after them is as reproducible.
- **Which slots exist**: slot ``k`` is tried only while fewer than ``nTrials`` of the slots
  before it succeeded (failed trials do not count), decided as soon as it is certain.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.samplers._lazy_random_state import LazyRandomState
from optuna.trial import FrozenTrial, TrialState

from tjtrainer.search import ROUND_RUNGS

if TYPE_CHECKING:
    from tjtrainer.config import TrainConfig
    from tjtrainer.studies import DurableStudies

SLOT_ATTR = "slot"
PRUNER_STARTUP_TRIALS = 5
# The share of trials that goes on to the next fold. Measured with
# bench/train_throughput.py (docs/TRAINER.md, Speed): a third keeps the fresh-data skill of
# the median rule over completed trials, which let about half of the trials go on.
KEEP_SHARE = 1 / 3
# The share of the first fold's fits that go on at each round rung.
ROUND_KEEP_SHARE = 1 / 2
RUNG_RMSE_ATTR = "rung_rmse"
FIRST_FOLD_RMSE_ATTR = "first_fold_rmse"


def slot_seed(seed: int, model: str, slot: int) -> int:
    """The sampler's seed for ``slot`` of ``model`` in a run seeded ``seed``."""
    entropy = [int(seed) & 0xFFFFFFFF, 0 if model == "LONG" else 1, int(slot), 0x5EED]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] & 0x7FFFFFFF)


def is_killed(trial: FrozenTrial) -> bool:
    """A trial whose process died under it: FAIL without an error of its own."""
    return trial.state == TrialState.FAIL and "error" not in trial.user_attrs


def slots_of(trials: Sequence[FrozenTrial]) -> dict[int, int]:
    """Trial number -> slot of every finished (or failed with an error) trial. Trials
    recorded before slots were (no ``slot`` attribute) take their place in number order."""
    out: dict[int, int] = {}
    used: set[int] = set()
    for trial in sorted(trials, key=lambda t: t.number):
        if is_killed(trial) or trial.state == TrialState.RUNNING:
            continue
        slot = trial.user_attrs.get(SLOT_ATTR)
        if not isinstance(slot, int) or slot in used:
            slot = min(set(range(len(used) + 1)) - used)
        out[trial.number] = slot
        used.add(slot)
    return out


class _HistoryView:
    """The study as the sampler may see it for one trial: only the trials of ``visible``
    (by number). Everything else is the study's."""

    def __init__(self, study: optuna.Study, visible: frozenset[int]) -> None:
        self._study = study
        self._visible = visible

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Any = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return [t for t in trials if t.number in self._visible]

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class SlotSampler(BaseSampler):
    """Multivariate TPE whose random state and history are fixed per trial by
    :meth:`prepare` (called, under the run's lock, right before each ``study.ask``)."""

    def __init__(self, seed: int, model: str, warm: Sequence[dict[str, Any]] = ()) -> None:
        """``warm``: the parameters of the first slots, in order (a warm start,
        :mod:`tjtrainer.warmstart`); later slots are sampled by TPE as usual."""
        self.seed = seed
        self.model = model
        self.warm = [dict(params) for params in warm]
        self._inner = TPESampler(multivariate=True, seed=slot_seed(seed, model, 0))
        self._visible: frozenset[int] = frozenset()
        self._slot = 0

    @classmethod
    def of_run(cls, config: TrainConfig, model: str, studies: DurableStudies) -> SlotSampler:
        """The sampler of ``model`` in the run of ``config``, with the run's warm start
        (stamped on, or read back from, its durable study)."""
        from tjtrainer.warmstart import warm_params

        storage, study_id = studies.storage, studies.study_ids[model]
        return cls(config.seed, model, warm_params(config, model, storage, study_id))

    def prepare(self, slot: int, visible: frozenset[int]) -> None:
        """The next trial is ``slot``, sampled from the trials numbered ``visible``."""
        self._slot = slot
        state = slot_seed(self.seed, self.model, slot)
        self._inner._rng = LazyRandomState(state)
        self._inner._random_sampler._rng = LazyRandomState(state)
        self._visible = visible

    def _view(self, study: optuna.Study) -> Any:
        return _HistoryView(study, self._visible)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._inner.infer_relative_search_space(self._view(study), trial)

    def _warm(self) -> dict[str, Any] | None:
        return self.warm[self._slot] if self._slot < len(self.warm) else None

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        warm = self._warm()
        if warm is not None:
            return {name: warm[name] for name in search_space if name in warm}
        return self._inner.sample_relative(self._view(study), trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        warm = self._warm()
        if warm is not None and param_name in warm:
            return warm[param_name]
        return self._inner.sample_independent(
            self._view(study), trial, param_name, param_distribution
        )

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._inner.before_trial(self._view(study), trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._inner.after_trial(study, trial, state, values)


@dataclass(frozen=True)
class PruningReference:
    """What a trial may be pruned against: the finished trials it was sampled from.

    Successive halving, over the first fold's rounds and then over folds:

    - at each rung of :data:`tjtrainer.search.ROUND_RUNGS`, the first fold's fit goes on
      only while its best early-stopping rmse is within the better half
      (:data:`ROUND_KEEP_SHARE`) of what the reference's trials that got that far had
      after as many rounds (a trial that had stopped earlier counts with its final rmse);
    - after fold ``step + 1``, a trial goes on only while its running mean is within the
      best :data:`KEEP_SHARE` of the reference's running means after as many folds.
    """

    reached: dict[int, int]  # fold step -> how many reference trials reported it
    thresholds: dict[int, float]
    rung_reached: dict[int, int] = field(default_factory=dict)
    rung_thresholds: dict[int, float] = field(default_factory=dict)

    @classmethod
    def of(cls, trials: Sequence[FrozenTrial]) -> PruningReference:
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        steps: dict[int, list[float]] = {}
        rungs: dict[int, list[float]] = {}
        for trial in finished:
            for step, value in trial.intermediate_values.items():
                steps.setdefault(step, []).append(float(value))
            for rung, value in enumerate(_rung_values(trial)):
                rungs.setdefault(rung, []).append(value)
        return cls(
            {s: len(v) for s, v in steps.items()},
            {s: linear_quantile(v, 1.0 - KEEP_SHARE) for s, v in steps.items()},
            {r: len(v) for r, v in rungs.items()},
            {r: linear_quantile(v, ROUND_KEEP_SHARE) for r, v in rungs.items()},
        )

    def prunes(self, value: float, step: int) -> bool:
        """Outside the best :data:`KEEP_SHARE` after as many folds (once enough reached it)."""
        if self.reached.get(step, 0) < PRUNER_STARTUP_TRIALS:
            return False
        return value < self.thresholds[step]

    def prunes_rung(self, rung: int, best_rmse: float) -> bool:
        """Worse than :data:`ROUND_KEEP_SHARE` of the reference at this round rung."""
        if self.rung_reached.get(rung, 0) < PRUNER_STARTUP_TRIALS:
            return False
        return best_rmse > self.rung_thresholds[rung]


def linear_quantile(values: Sequence[float], q: float) -> float:
    """``np.quantile(values, q)`` (its default, linear method), bit for bit, for the few
    values of a pruning reference: numpy's call costs ~40 us, about 1 ms a trial."""
    ordered = sorted(values)
    if any(math.isnan(v) for v in ordered):
        return math.nan  # as numpy: a nan anywhere gives nan
    virtual = (len(ordered) - 1) * q
    below = math.floor(virtual)
    if virtual >= len(ordered) - 1:
        return ordered[-1]
    if virtual < 0:
        return ordered[0]
    low, high, weight = ordered[below], ordered[below + 1], virtual - below
    step = high - low
    return high - step * (1 - weight) if weight >= 0.5 else low + step * weight


def _rung_values(trial: FrozenTrial) -> list[float]:
    """A finished trial's first-fold rmse at every round rung it stands for: the rungs its
    fit reached, and (when that fit ended by itself before the last rung) every later rung
    at its final rmse; a fit pruned at a rung stands for no later one."""
    seen = trial.user_attrs.get(RUNG_RMSE_ATTR)
    final = trial.user_attrs.get(FIRST_FOLD_RMSE_ATTR)
    if not isinstance(seen, list) or not isinstance(final, (int, float)):
        return []  # recorded before round rungs (or a fit without them)
    values = [float(v) for v in seen]
    if trial.state == TrialState.PRUNED and not trial.intermediate_values:
        return values  # stopped at its last rung
    return values + [float(final)] * (len(ROUND_RUNGS) - len(values))


@dataclass
class Slots:
    """Which slot of one model's search to ask next, and when (see the module's text).

    ``done`` maps the slots already finished to whether they succeeded (completed or
    pruned; a failure with an error is ``False``).
    """

    n_trials: int
    lag: int
    done: dict[int, bool] = field(default_factory=dict)
    in_flight: set[int] = field(default_factory=set)
    condition: threading.Condition = field(default_factory=threading.Condition)

    def _candidate(self) -> int:
        slot = 0
        while slot in self.done or slot in self.in_flight:
            slot += 1
        return slot

    def decide(self) -> tuple[str, int]:
        """``("ask", k)``, ``("wait", k)`` or ``("stop", k)`` for the next slot ``k``."""
        k = self._candidate()
        succeeded = sum(1 for s, ok in self.done.items() if s < k and ok)
        unknown = sum(1 for s in self.in_flight if s < k)
        if succeeded >= self.n_trials:
            return "stop", k
        if succeeded + unknown >= self.n_trials:
            return "wait", k  # the trials in flight decide whether k is needed
        if any(s <= k - self.lag for s in self.in_flight):
            return "wait", k  # k's history is not finished yet
        return "ask", k

    def visible(self, k: int, slot_of: dict[int, int]) -> frozenset[int]:
        """The trial numbers slot ``k`` is sampled from."""
        return frozenset(n for n, s in slot_of.items() if s <= k - self.lag)


def rung_check(reference: PruningReference) -> Callable[[int, float], bool]:
    """The first fold's round-rung check of a trial, against ``reference``."""
    return reference.prunes_rung


def reporter(trial: optuna.Trial, reference: PruningReference) -> Callable[[float, int], bool]:
    """The fold-by-fold report of a trial: kept with the trial, pruned by ``reference``."""

    def report(value: float, step: int) -> bool:
        trial.report(value, step)
        return reference.prunes(value, step)

    return report
