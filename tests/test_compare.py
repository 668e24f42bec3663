"""Search-cost comparisons: the law's ladder against μTransfer and ordinary search at one target."""

import json

import optuna
import pytest
from tiny import TINY, TRAINING, WIDTHS
from typer.testing import CliRunner

from optuna_lrlaw.cli import app
from optuna_lrlaw.ladder import LadderEvents, compare_search_costs, default_rungs, run_ladder
from optuna_lrlaw.ladder.compare import _transfer_pair
from optuna_lrlaw.proxies.parametrization import attention_scale

TARGET_WIDTH = 32


class Stages(LadderEvents):
    def __init__(self) -> None:
        self.stages, self.trials = [], 0

    def stage_started(self, label, rung, trials_left):
        self.stages.append((label, rung.name, trials_left))

    def trial_finished(self, index, rung, trial):
        self.trials += 1


@pytest.fixture(scope="module")
def compared(code_corpus, tmp_path_factory):
    """A two-rung ladder and its comparison at width 32: (storage, rungs, target, ladder, table, events)."""
    storage = f"sqlite:///{tmp_path_factory.mktemp('compare') / 'compare.db'}"
    rungs = default_rungs(WIDTHS, **TINY)
    (target,) = default_rungs((TARGET_WIDTH,), **TINY)
    settings = {"corpus": code_corpus, **TRAINING}
    ladder = run_ladder(rungs, storage=storage, trials=6, **settings)
    events = Stages()
    table = compare_search_costs(
        ladder, rungs, target, storage=storage, search_trials=4, proxy_trials=4, events=events, **settings
    )
    return storage, rungs, target, ladder, table, events


def test_each_strategy_is_charged_for_every_run_it_trained(compared):
    _, _, target, ladder, table, events = compared
    rows = table.set_index("strategy")
    assert list(rows.index) == ["law ladder", "μTransfer", "ordinary search"]
    assert rows.loc["law ladder", "runs"] == ladder.rungs["trials"].sum() + 1
    assert rows.loc["μTransfer", "runs"] == 4 + 1
    assert rows.loc["ordinary search", "runs"] == rows.loc["ordinary search", "target_runs"] == 4
    assert list(rows["target_runs"]) == [1, 1, 4]
    # Ordinary search trains only the target, each run on the same tokens: FLOPs add up run by run.
    one_run = target.model.flops_per_token() * target.tokens
    assert rows.loc["ordinary search", "flops"] == pytest.approx(4 * one_run)
    assert rows.loc["law ladder", "flops"] == pytest.approx(ladder.rungs["flops"].sum() + one_run)
    assert rows.loc["ordinary search", "flops_vs_search"] == 1.0
    assert (rows["seconds"] > 0).all() and set(rows["device"]) == {"cpu"}
    assert events.trials == 1 + 4 + 1 + 4


def test_regret_is_measured_against_the_best_target_loss(compared):
    _, _, _, ladder, table, _ = compared
    assert table["regret"].min() == 0.0 and (table["regret"] >= 0).all()
    best = table["loss"].min()
    for loss, regret in zip(table["loss"], table["regret"], strict=True):
        assert regret == pytest.approx(loss / best - 1)
    law_row = table.set_index("strategy").loc["law ladder"]
    target_scale = default_rungs((TARGET_WIDTH,), **TINY)[0].scale()
    assert law_row["lr"] == pytest.approx(ladder.law.predict(target_scale).recommend().lr)


def test_the_ladder_command_compares_with_compare(compared, code_corpus):
    storage = compared[0]
    args = ["ladder", "--storage", storage, "--widths", ",".join(map(str, WIDTHS)), "--target-width", str(TARGET_WIDTH)]
    args += ["--depth", "1", "--head-dim", "8", "--seq-len", "32", "--batch-size", "8", "--tokens-per-param", "8"]
    args += ["--trials", "6", "--device", "cpu", "--corpus", code_corpus, "--compare", "--search-trials", "4"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["comparison"]
    assert [row["strategy"] for row in rows] == ["law ladder", "μTransfer", "ordinary search"]
    assert [row["runs"] for row in rows] == list(compared[4]["runs"])  # all stored already: nothing new ran
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and "what it cost" in table.stdout and "ordinary search" in table.stdout


def test_the_comparison_is_stored_and_resumes_without_new_runs(compared, code_corpus):
    storage, rungs, target, ladder, table, _ = compared
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert {f"ladder/compare/search/{target.name}", f"ladder/compare/law/{target.name}"} <= names
    events = Stages()
    again = compare_search_costs(
        ladder,
        rungs,
        target,
        storage=storage,
        search_trials=4,
        proxy_trials=3,
        events=events,
        corpus=code_corpus,
        **TRAINING,
    )
    assert events.trials == 0 and all(left == 0 for *_, left in events.stages)
    assert again.drop(columns="seconds").equals(table.drop(columns="seconds"))


def test_mutransfer_is_anchored_at_the_proxy_shape():
    proxy, target = default_rungs((16, 32), **TINY)
    mup_proxy, mup_target = _transfer_pair(proxy, target)
    assert mup_proxy.model.parametrization == mup_target.model.parametrization == "mup"
    assert mup_target.model.base_width == mup_proxy.model.width == 16
    assert mup_proxy.model.width_multiplier == 1.0 and mup_target.model.width_multiplier == 2.0
    # heads of a fixed size (8) are added with width: the attention scale stays the proxy's
    assert mup_target.model.base_head_dim == mup_target.model.head_dim == 8
    assert attention_scale(mup_target.model) == attention_scale(mup_proxy.model)
    deeper = default_rungs((32,), **{**TINY, "depth": 2})[0]
    assert _transfer_pair(proxy, deeper)[1].model.parametrization == "completep"


def test_a_ladder_without_a_law_is_refused(compared):
    from optuna_lrlaw.ladder import LadderResult

    _, rungs, target, ladder, _, _ = compared
    with pytest.raises(ValueError, match="no law"):
        compare_search_costs(LadderResult(ladder.rungs, None), rungs, target)
    with pytest.raises(ValueError, match="at least 1"):
        compare_search_costs(ladder, rungs, target, search_trials=0)


def test_a_comparison_for_another_target_model_under_the_same_name_is_refused(compared, code_corpus):
    storage, rungs, target, ladder, _, _ = compared
    (mup_target,) = default_rungs((TARGET_WIDTH,), **TINY, parametrization="mup")
    assert mup_target.name == target.name  # the same study names: the stored runs are sp runs
    with pytest.raises(ValueError, match="parametrization: 'sp' stored, 'mup' now"):
        compare_search_costs(ladder, rungs, mup_target, storage=storage, corpus=code_corpus, **TRAINING)
