"""A law that refits itself from every finished study in an Optuna storage.

A scale-up ladder keeps one study per scale in one storage. `LawFromStorage` turns that
storage into a live law: asked for the law a study should use, it fits `fit_law` on every
*other* study that records a scale (the study's own trials already enter its sampler's
posterior directly; counting them twice would make the belief overconfident). Fits are
cached and redone only when a finished trial has been added somewhere, so a sampler may
ask before every trial.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Collection, Sequence

import optuna

from optuna_lrlaw.integration.study import FINISHED_STATES, _scale_from, observations_from_study, open_storage
from optuna_lrlaw.science._arguments import check_instance
from optuna_lrlaw.science.law import DEFAULT_FEATURES, LRLaw, checked_features, fit_law
from optuna_lrlaw.science.priors import LawPrior


class LawFromStorage:
    """The LR law fitted on every finished study in ``storage`` that records a scale.

    Args:
        storage: an Optuna storage or its URL (SQLite, PostgreSQL, MySQL, a journal file).
        features: scale features of the law (see `fit_law`).
        prior: a `LawPrior` for the law's coefficients; default `priors.WEAK`.
        lr_param: name of the learning-rate parameter in the studies' trials.
        studies: the names of the studies that take part (for example the rungs below
            one in a ladder, in a storage shared with other ladders); default: every
            study that records a scale.

    Example:
        >>> import optuna
        >>> from optuna_lrlaw import LawFromStorage, LRLawSampler
        >>> storage = optuna.storages.InMemoryStorage()
        >>> sampler = LRLawSampler(LawFromStorage(storage))
        >>> study = optuna.create_study(storage=storage, sampler=sampler)
    """

    def __init__(
        self,
        storage: str | optuna.storages.BaseStorage,
        *,
        features: Sequence[str] = DEFAULT_FEATURES,
        prior: LawPrior | None = None,
        lr_param: str = "lr",
        studies: Collection[str] | None = None,
    ) -> None:
        if prior is not None:
            check_instance(prior, LawPrior, "prior", what="a LawPrior (optuna_lrlaw.priors) or None")
        if isinstance(studies, str):
            raise TypeError(f"studies must be a collection of study names, got the string {studies!r}")
        self._storage = open_storage(storage)
        self.studies = None if studies is None else frozenset(studies)
        self.features = checked_features(features)
        self.prior = prior
        self.lr_param = lr_param
        self._lock = threading.Lock()
        self._cache: dict[str | None, tuple[tuple, LRLaw | None]] = {}
        self._warned: set[tuple] = set()

    def law_for(self, study: optuna.Study | None = None) -> LRLaw | None:
        """The law fitted on every scaled study but ``study``; None while the others cannot
        support a law yet (no finished trials, or no sweep that brackets its optimum)."""
        exclude = None if study is None else study.study_name
        sources = [
            s
            for s in self._storage.get_all_studies()
            if s.study_name != exclude
            and (self.studies is None or s.study_name in self.studies)
            and _scale_from(s.user_attrs) is not None
        ]
        key = tuple(
            (s.study_name, len(self._storage.get_all_trials(s._study_id, deepcopy=False, states=FINISHED_STATES)))
            for s in sources
        )
        with self._lock:
            cached = self._cache.get(exclude)
            if cached is not None and cached[0] == key:
                return cached[1]
            law = self._fit(sources, key)
            self._cache[exclude] = (key, law)
            return law

    def _fit(self, sources: list, key: tuple) -> LRLaw | None:
        if not any(count for _, count in key):
            return None
        studies = [optuna.load_study(study_name=s.study_name, storage=self._storage) for s in sources]
        try:
            return fit_law(
                observations_from_study(studies, lr_param=self.lr_param), features=self.features, prior=self.prior
            )
        except ValueError as error:
            if key not in self._warned:
                self._warned.add(key)
                warnings.warn(f"no law from the storage yet ({error}); searching without one", stacklevel=3)
            return None
