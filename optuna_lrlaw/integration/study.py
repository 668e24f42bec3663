"""Reading finished runs from Optuna studies.

The scale of a study's runs is stored as user attributes, part of optuna-lrlaw's public
contract, so any tool (or a later version of this one) can read them back:

======================  =====================================================
attribute               meaning
======================  =====================================================
``lrlaw.params``        non-embedding parameters N of the study's runs
``lrlaw.tokens``        training tokens D
``lrlaw.batch_tokens``  tokens per optimizer step B (optional)
``lrlaw.diverged``      on a trial: True when that run diverged
======================  =====================================================

The scale attributes may sit on the study (all its trials share a scale) or on a trial
(overriding the study's). The learning rate is the trial parameter named ``lr_param``;
the loss is the trial's value.

What a finished trial says about the optimum (`trial_outcome`, shared by the law and the
sampler): a completed trial gives its loss, diverged when the loss is not finite or the
trial carries ``lrlaw.diverged``. A failed or pruned trial is a diverged run (censored)
when it carries ``lrlaw.diverged`` or its reported curve had diverged (see
`optuna_lrlaw.science.training_curve.divergence`), and otherwise says nothing: a missing
file or a lost worker is not the LR's doing, and a pruned loss is not a final loss.

Optuna records an objective that returns NaN as a plain failure, indistinguishable from a
crash, so a run that blew up should return ``inf`` (or set the attribute); `LRLawSampler`
warns, naming the trial and that remedy, whenever a failed trial has to be left out.
"""

from __future__ import annotations

import math
import os
import random
import re
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import optuna
import pandas as pd
import sqlalchemy

from optuna_lrlaw.science.observations import validate_observations
from optuna_lrlaw.science.scale import Scale
from optuna_lrlaw.science.training_curve import divergence

SCALE_ATTRS: dict[str, str] = {
    "params": "lrlaw.params",
    "tokens": "lrlaw.tokens",
    "batch_tokens": "lrlaw.batch_tokens",
}
DIVERGED_ATTR = "lrlaw.diverged"
#: The trainer's relative seed noise of one run's final loss (the observations' ``noise``).
NOISE_ATTR = "lrlaw.noise"
#: What a proxy's objective value is (its final validation loss): `Study.metric_names`,
#: shown by optuna-dashboard.
METRIC_NAME = "validation_loss"
#: The trial states that can say something about the optimum (see `trial_outcome`).
FINISHED_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)
#: The trials that are runs and use a budget: a failed trial is retried, not counted.
RUN_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


#: A running trial records a heartbeat this often (seconds); one silent for `STALE_SECONDS`
#: belongs to a dead worker: the next worker to start a trial marks it failed and enqueues
#: it again (`RetryHeartbeatStaleTrialCallback`), up to `MAX_RETRIES` times. A proxy run given a
#: ``checkpoint_dir`` resumes from its last checkpoint.
HEARTBEAT_SECONDS = 30
STALE_SECONDS = 120
MAX_RETRIES = 3
#: The tables Optuna's RDB storage creates: these, and every ``study_*`` and ``trial*`` table
#: (its schema grows by such tables between versions).
_OPTUNA_TABLES = frozenset({"studies", "version_info", "alembic_version"})
#: Errors of workers that create one storage's tables at the same moment (SQLite,
#: PostgreSQL, MySQL and MariaDB): the loser waits a moment and opens what the winner created.
_CREATION_RACES = (
    "already exists",
    "UNIQUE constraint failed",
    "UniqueViolation",
    "duplicate key",
    "Duplicate entry",
    "is locked",
)
_CREATION_ATTEMPTS = 5


def trial_lr(trial: optuna.trial.FrozenTrial, lr_param: str = "lr") -> float | None:
    """The LR a trial ran at, or, for one still waiting or starting, the LR it was enqueued with."""
    return trial.params.get(lr_param, trial.system_attrs.get("fixed_params", {}).get(lr_param))


def checked_lr_range(lr_range: tuple[float, float]) -> tuple[float, float]:
    """``lr_range`` as ``(low, high)``, or a ValueError unless ``0 < low < high``."""
    low, high = lr_range
    if not 0 < low < high:
        raise ValueError(f"lr_range must be (low, high) with 0 < low < high, got {lr_range!r}")
    return float(low), float(high)


def open_storage(
    storage: str | optuna.storages.BaseStorage,
    *,
    heartbeat_seconds: int = HEARTBEAT_SECONDS,
    stale_seconds: float = STALE_SECONDS,
) -> optuna.storages.BaseStorage:
    """The Optuna storage at ``storage`` (a URL), or one clear error saying what is wrong with it.

    A URL opens an `optuna.storages.RDBStorage` with heartbeats every ``heartbeat_seconds``,
    so that the trial of a worker silent for ``stale_seconds`` is failed and retried (see
    `HEARTBEAT_SECONDS`). An SQLite URL is checked before
    anything is created: its folder must exist and be writable, and an existing file must be
    an SQLite database. Any other URL goes to SQLAlchemy, whose failure is reported with the
    URL. A storage object is returned as it is.
    """
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if not isinstance(storage, str) or "://" not in storage:
        raise ValueError(
            f"storage {masked_url(storage)!r} is not a URL: use sqlite:///PATH.db, postgresql://USER:PASSWORD@HOST/DB "
            "or mysql://USER:PASSWORD@HOST/DB"
        )
    if (path := sqlite_path(storage)) is not None:
        if path in ("", ":memory:"):
            raise ValueError(
                f"storage {storage!r} is an in-memory SQLite database: it is lost when the command ends and "
                "other workers cannot see it; give a file (sqlite:///ladder.db), or from Python "
                "optuna.storages.InMemoryStorage()"
            )
        _check_sqlite_path(storage, path)
    attempts = 0
    while True:
        try:
            if others := _tables_of_other_applications(storage):
                raise ValueError(
                    f"the database holds tables of another application ({', '.join(others[:5])}"
                    f"{', ...' if len(others) > 5 else ''}): give the ladder a database of its own, or, to share "
                    "this one, pass an optuna.storages.RDBStorage from Python"
                )
            with warnings.catch_warnings():  # Optuna calls heartbeats experimental since 2.x
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    storage,
                    # At least four heartbeats in a stale period: a live worker is never stale.
                    heartbeat_interval=max(1, min(heartbeat_seconds, int(stale_seconds // 4))),
                    grace_period=stale_seconds,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=MAX_RETRIES
                    ),
                )
        except Exception as error:  # SQLAlchemy's and the drivers' errors: report them with the URL
            attempts += 1
            if any(race in str(error) for race in _CREATION_RACES) and attempts < _CREATION_ATTEMPTS:
                time.sleep(random.uniform(0.1, 0.5) * attempts)  # another worker is creating the tables
                continue
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if secret := _password(storage):
                reason = reason.replace(secret, "***")
            raise ValueError(f"cannot open storage {masked_url(storage)!r}: {reason}") from None


def _tables_of_other_applications(url: str) -> list[str]:
    """The tables of the database at ``url`` that are not Optuna's: a ladder writing its
    tables beside them would mix two applications' data in one database."""
    engine = sqlalchemy.create_engine(url)
    try:
        names = set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    return sorted(n for n in names if n not in _OPTUNA_TABLES and not n.startswith(("study_", "trial")))


def sqlite_path(url: str) -> str | None:
    """The file path of an SQLite URL ("" or ":memory:" for an in-memory one), else None."""
    scheme, _, rest = url.partition("://")
    return rest[1:] if scheme == "sqlite" else None


def masked_url(url: object) -> str:
    """``url`` with its password shown as ``***``: what a message, a log or a file may hold."""
    text = str(url)
    try:
        return sqlalchemy.engine.make_url(text).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: mask anything between "user:" and "@"
        return hide_passwords(text)


def hide_passwords(text: str) -> str:
    """``text`` (a message, a log line) with the password of any URL in it shown as ``***``."""
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def _password(url: str) -> str | None:
    try:
        return sqlalchemy.engine.make_url(url).password
    except Exception:
        return None


def _check_sqlite_path(url: str, path: str) -> None:
    if path in ("", ":memory:"):
        return
    file = Path(path)
    folder = file.parent.resolve()
    if not folder.is_dir():
        raise ValueError(f"storage {masked_url(url)!r}: the folder {folder} does not exist")
    if file.is_dir():
        raise ValueError(f"storage {masked_url(url)!r}: {file} is a folder, not a database file")
    if file.exists():
        with file.open("rb") as handle:
            header = handle.read(16)
        if header and header != b"SQLite format 3\x00":
            raise ValueError(f"storage {masked_url(url)!r}: {file} is not an SQLite database")
        if not os.access(file, os.W_OK):
            raise ValueError(f"storage {masked_url(url)!r}: {file} is not writable")
    elif not os.access(folder, os.W_OK):
        raise ValueError(f"storage {masked_url(url)!r}: the folder {folder} is not writable")


def name_the_metric(study: optuna.Study) -> None:
    """Name the study's objective `METRIC_NAME` (once), for optuna-dashboard and `Study.metric_names`."""
    if study.metric_names != [METRIC_NAME]:
        with warnings.catch_warnings():  # set_metric_names is experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC_NAME])


def set_study_scale(study: optuna.Study, scale: Scale) -> None:
    """Record ``scale`` on ``study`` so that its trials can be read as observations.

    Example:
        >>> study = optuna.create_study()
        >>> set_study_scale(study, Scale(params=1e8, tokens=2e9))
        >>> study_scale(study)
        Scale(params=100000000.0, tokens=2000000000.0, batch_tokens=None, active_params=None)
    """
    for name, attr in SCALE_ATTRS.items():
        value = getattr(scale, name)
        if value is not None:
            study.set_user_attr(attr, value)


def study_scale(study: optuna.Study) -> Scale | None:
    """The scale recorded on ``study``, or None when it has none."""
    return _scale_from(study.user_attrs)


def _scale_from(attrs: dict, fallback: dict | None = None) -> Scale | None:
    merged = {**(fallback or {}), **attrs}
    values = {name: merged.get(attr) for name, attr in SCALE_ATTRS.items()}
    if values["params"] is None or values["tokens"] is None:
        return None
    return Scale(**values)


def trial_outcome(trial: optuna.trial.FrozenTrial, lr_param: str = "lr") -> tuple[float, float, bool] | None:
    """``(lr, loss, diverged)`` of a finished trial, or None when it says nothing about the optimum."""
    if lr_param not in trial.params:
        return None
    lr = float(trial.params[lr_param])
    state = trial.state
    if state == optuna.trial.TrialState.COMPLETE:
        loss = float(trial.value)
        return lr, loss, bool(trial.user_attrs.get(DIVERGED_ATTR, False)) or not math.isfinite(loss)
    if state in (optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED) and ended_diverged(trial):
        return lr, math.nan, True
    return None


def ended_diverged(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial that ended without a final loss had diverged: it carries
    ``lrlaw.diverged``, or the curve it reported had (`divergence`)."""
    curve = [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)]
    return bool(trial.user_attrs.get(DIVERGED_ATTR, False)) or divergence(curve) is not None


def observations_from_study(studies: optuna.Study | Iterable[optuna.Study], *, lr_param: str = "lr") -> pd.DataFrame:
    """Finished trials of one or more studies as observations.

    Each finished trial enters as `trial_outcome` reads it; running trials, and trials
    without ``lr_param``, are skipped. Extra columns ``study`` and ``trial`` say where each
    row came from.

    Raises:
        ValueError: for a multi-objective study, or a trial with no scale.
    """
    if isinstance(studies, optuna.Study):
        studies = [studies]
    rows = []
    for study in studies:
        if len(study.directions) != 1:
            raise ValueError(f"study {study.study_name!r} is multi-objective; one loss per run is needed")
        study_attrs = study.user_attrs
        for trial in study.get_trials(deepcopy=False):
            outcome = trial_outcome(trial, lr_param)
            if outcome is None:
                continue
            lr, loss, diverged = outcome
            scale = _scale_from(trial.user_attrs, study_attrs)
            if scale is None:
                raise ValueError(
                    f"trial {trial.number} of study {study.study_name!r} has no scale: set "
                    f"the user attributes {SCALE_ATTRS['params']!r} and {SCALE_ATTRS['tokens']!r}"
                )
            rows.append(
                {
                    "params": scale.params,
                    "tokens": scale.tokens,
                    "batch_tokens": scale.batch_tokens,
                    "lr": lr,
                    "loss": loss,
                    "diverged": diverged,
                    "noise": trial.user_attrs.get(NOISE_ATTR, math.nan),
                    "study": study.study_name,
                    "trial": trial.number,
                }
            )
    if not rows:
        raise ValueError(f"no finished trial with a parameter {lr_param!r} in the given studies")
    frame = pd.DataFrame(rows)
    for optional in ("batch_tokens", "noise"):
        if frame[optional].isna().all():
            frame = frame.drop(columns=optional)
    return validate_observations(frame)


def observations_from_storage(storage: str | optuna.storages.BaseStorage, *, lr_param: str = "lr") -> pd.DataFrame:
    """Observations from every study in ``storage`` that records a scale (see `set_study_scale`)."""
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    studies = [
        optuna.load_study(study_name=s.study_name, storage=storage)
        for s in summaries
        if _scale_from(s.user_attrs) is not None
    ]
    if not studies:
        raise ValueError("no study in the storage records a scale (user attributes lrlaw.params, lrlaw.tokens)")
    return observations_from_study(studies, lr_param=lr_param)
