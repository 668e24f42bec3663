"""Search-cost comparisons: six ways of choosing a target's LR, scored on a truth grid at the target."""

import json
import math

import optuna
import pytest
from tiny import TINY, TRAINING, WIDTHS
from typer.testing import CliRunner

from optuna_lrlaw import fit_law, priors
from optuna_lrlaw.cli import app
from optuna_lrlaw.ladder import (
    ComparisonPlan,
    LadderEvents,
    compare_search_costs,
    comparison_plan,
    default_rungs,
    run_ladder,
)
from optuna_lrlaw.ladder import compare as compare_module
from optuna_lrlaw.proxies.parametrization import attention_scale

TARGET_WIDTH, SERVED_WIDTH = 40, 32
BUDGETS = {
    "truth_lrs": 4,
    "truth_span": 16.0,
    "proxy_lrs": 4,
    "search_trials": 4,
    "replay_seeds": 3,
    "pruned_search_trials": 2,
    "sampler_trials": 2,
}


class Counter(LadderEvents):
    def __init__(self) -> None:
        self.stages, self.trials = [], 0

    def stage_started(self, label, rung, trials_left):
        self.stages.append((label, rung.name, trials_left))

    def trial_finished(self, index, rung, trial):
        self.trials += 1


def tiny_plan() -> ComparisonPlan:
    served, target = default_rungs((SERVED_WIDTH, TARGET_WIDTH), **TINY)  # smallest first
    return ComparisonPlan(tuple(default_rungs(WIDTHS, **TINY)), target, also_serves=(served,), **BUDGETS)


@pytest.fixture(scope="module")
def compared(code_corpus, tmp_path_factory):
    """A comparison on two tiny rungs and a width-40 target: (storage, plan, comparison, events)."""
    storage = f"sqlite:///{tmp_path_factory.mktemp('compare') / 'compare.db'}"
    events = Counter()
    plan = tiny_plan()
    comparison = compare_search_costs(plan, storage=storage, events=events, corpus=code_corpus, **TRAINING)
    return storage, plan, comparison, events


def ladder_of(storage, plan, code_corpus, name="ladder"):
    """The stored ladder again (a finished ladder resumes without training)."""
    rungs = list(plan.rungs) if name == "ladder" else [plan.in_mup(rung) for rung in plan.rungs]
    return run_ladder(rungs, storage=storage, name=name, trials=plan.ladder_trials, corpus=code_corpus, **TRAINING)


def one_run_flops(rung):
    return rung.model.flops_per_token() * rung.tokens


def test_every_strategy_is_charged_for_every_run_it_trained(compared, code_corpus):
    storage, plan, comparison, _ = compared
    rows = comparison.strategies.set_index("strategy")
    assert list(rows.index[:10]) == [
        "law ladder (sp)",
        "law ladder (sp), median",
        "law ladder (μP)",
        "law ladder (μP), median",
        "law ladder (μP, μP prior)",
        "law ladder (μP, μP prior), median",
        "μTransfer",
        "μTransfer, horizon matched",
        "TPE + median pruner (real)",
        "law + LRLawSampler, 2 trials",
    ]
    ladder = ladder_of(storage, plan, code_corpus)
    ladder_flops = ladder.rungs["flops"].sum()
    target_flops = one_run_flops(plan.target)
    law = rows.loc["law ladder (sp)"]
    assert law["runs"] == ladder.rungs["trials"].sum() + 1 and law["target_runs"] == 1
    assert law["flops"] == pytest.approx(ladder_flops + target_flops)
    # The ladder serves two targets: half its cost is charged to this one.
    assert law["flops_amortised"] == pytest.approx(ladder_flops / 2 + target_flops)
    sampler = rows.loc["law + LRLawSampler, 2 trials"]
    assert sampler["flops"] == pytest.approx(ladder_flops + 2 * target_flops)
    # μTransfer: a 4-LR sweep of the base model, then one μP target run.
    proxy = plan.in_mup(plan.base)
    transfer = rows.loc["μTransfer"]
    assert transfer["runs"] == 4 + 1
    assert transfer["flops"] == pytest.approx(4 * one_run_flops(proxy) + target_flops)
    matched = plan.in_mup(plan.base, tokens=plan.target.tokens)
    assert matched.tokens == pytest.approx(plan.target.tokens, rel=0.01) and matched.tokens > proxy.tokens
    assert rows.loc["μTransfer, horizon matched", "flops"] == pytest.approx(4 * one_run_flops(matched) + target_flops)
    # Replayed ordinary searches: k trials at the target cost k target runs.
    for k in (4,):
        assert rows.loc[f"TPE, {k} trials (replayed)", "flops"] == pytest.approx(k * target_flops)
    pruned = rows.loc["TPE + median pruner (real)"]
    assert pruned["target_runs"] == 2 and pruned["flops"] <= 2 * target_flops + 1
    tpe_to_goal = comparison.trials_to_goal.set_index(["sampler", "goal"]).loc[("TPE", 0.005), "median_flops"]
    assert rows["flops_vs_search"].tolist() == pytest.approx((rows["flops"] / tpe_to_goal).tolist())
    assert (rows["seconds"] > 0).all() and comparison.device == "cpu"


def test_each_strategy_is_scored_against_its_own_parametrizations_truth(compared, code_corpus):
    storage, plan, comparison, _ = compared
    truth = comparison.truth
    assert set(truth) == {"sp", "mup"}
    for curve in truth.values():
        assert curve.seeds == 2 and len(curve.lrs) >= 4 and curve.span >= 16.0 * 0.999
    rows = comparison.strategies.set_index("strategy")
    for strategy in ("law ladder (sp)", "law ladder (μP)", "μTransfer", "TPE + median pruner (real)"):
        row = rows.loc[strategy]
        curve = truth[row["parametrization"]]
        assert row["regret"] == pytest.approx(float(curve.regret(row["lr"])))
        assert row["regret_se"] == pytest.approx(float(curve.regret_se(row["lr"])))
        assert row["measured_se"] == pytest.approx(curve.seed_sd / math.sqrt(2) / curve.best_loss)
    assert rows.loc["law ladder (μP)", "parametrization"] == "mup" == rows.loc["μTransfer", "parametrization"]
    # The law's row trains the law's recommended LR; the sampler's row is scored by its replays.
    sp_law = ladder_of(storage, plan, code_corpus).law
    assert rows.loc["law ladder (sp)", "lr"] == pytest.approx(sp_law.predict(plan.target.scale()).recommend().lr)
    assert rows.loc["law ladder (sp), median", "lr"] == pytest.approx(sp_law.predict(plan.target.scale()).lr)
    mup_law = fit_law(ladder_of(storage, plan, code_corpus, name="ladder/mup").law.observations, prior=priors.MUP)
    mup_target = plan.in_mup(plan.target).scale()
    assert rows.loc["law ladder (μP, μP prior), median", "lr"] == pytest.approx(mup_law.predict(mup_target).lr)
    replayed = comparison.replays.set_index(["sampler", "trials"]).loc[("law + LRLawSampler", 2)]
    assert rows.loc["law + LRLawSampler, 2 trials", "regret"] == pytest.approx(replayed["regret"])
    served = comparison.served.set_index("target")
    assert list(served.index) == [plan.target.name, plan.also_serves[0].name]
    assert (served["lo90"] < served["lr"]).all() and (served["lr"] < served["hi90"]).all()


def test_ordinary_search_is_replayed_over_the_ladders_range_and_inside_the_laws_window(compared):
    """A user without a law searches the range the ladder searched; the sp truth reaches it.
    TPE is replayed again inside the law's window, the μP truth stays at its window."""
    _, plan, comparison, _ = compared
    sp, mup = comparison.truth["sp"], comparison.truth["mup"]
    assert sp.lrs[0] <= plan.lr_range[0] * 1.0001 and sp.lrs[-1] >= plan.lr_range[1] * 0.9999
    steps = sp.lrs[1:] / sp.lrs[:-1]
    assert steps.max() <= (plan.truth_span ** (1 / (plan.truth_lrs - 1))) ** 2 * 1.0001
    assert mup.span < sp.span
    replays = comparison.replays
    assert {"TPE", "GP", "random", compare_module.WINDOW_TPE} <= set(replays["sampler"])
    to_goal = comparison.trials_to_goal.set_index(["sampler", "goal"])
    window_flops = to_goal.loc[(compare_module.WINDOW_TPE, 0.005), "median_flops"]
    assert comparison.goal["window_tpe_flops_to_goal"] == pytest.approx(window_flops)
    rows = comparison.strategies.set_index("strategy")
    assert f"{compare_module.WINDOW_TPE}, 4 trials (replayed)" in rows.index


def test_the_goal_is_checked_as_stated(compared):
    goal = compared[2].goal
    expected = (
        goal["regret"] <= 0.005
        and goal["flops"] <= 0.25 * goal["tpe_flops_to_goal"]
        and goal["gap_vs_mutransfer"] <= 2 * goal["gap_se"]
    )
    assert goal["met"] == expected and goal["best_law_strategy"].startswith("law")


def test_the_comparison_is_stored_and_resumes_without_new_runs(compared, code_corpus):
    storage, plan, comparison, _ = compared
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert f"ladder/compare/truth-sp/{plan.target.name}/seed1" in names
    assert f"ladder/mup/{plan.in_mup(plan.rungs[0]).name}" in names
    events = Counter()
    again = compare_search_costs(plan, storage=storage, events=events, corpus=code_corpus, **TRAINING)
    assert events.trials == 0 and all(left == 0 for *_, left in events.stages)
    columns = [c for c in comparison.strategies.columns if not c.startswith("seconds")]
    assert again.strategies[columns].equals(comparison.strategies[columns])


def test_the_compare_command_prints_and_writes_the_comparison(compared, code_corpus, tmp_path, monkeypatch):
    storage, plan, _, _ = compared
    shape = {key: TINY[key] for key in ("depth", "head_dim", "seq_len", "batch_size", "tokens_per_param")}
    monkeypatch.setitem(
        compare_module.PRESETS,
        "tiny",
        {
            "widths": WIDTHS,
            "target_width": TARGET_WIDTH,
            "also_serves": (SERVED_WIDTH,),
            "shape": shape,
            "budgets": BUDGETS,
        },
    )
    args = ["compare", "--preset", "tiny", "--storage", storage, "--name", "ladder", "--device", "cpu"]
    args += ["--corpus", code_corpus, "--out", str(tmp_path / "c.json"), "--figure", str(tmp_path / "c.html")]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["target"] == plan.target.name and payload["device"] == "cpu"
    assert [row["strategy"] for row in payload["strategies"]][:2] == ["law ladder (sp)", "law ladder (sp), median"]
    assert json.loads((tmp_path / "c.json").read_text())["command"] == "optuna-lrlaw compare --preset tiny"
    assert "plotly" in (tmp_path / "c.html").read_text()
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and "μTransfer, horizon matched" in table.stdout and "Goal" in table.stdout


@pytest.mark.parametrize("width", [80, 160])
def test_the_comparison_table_fits_the_terminal(compared, width, monkeypatch):
    """At 80 columns the table leaves out its least wanted columns (cost details), never
    ellipsizing a cell; every strategy and its regret always show."""
    import importlib
    import os

    from rich.console import Console

    compare_command = importlib.import_module("optuna_lrlaw.cli.compare")  # the package's `compare` is the command

    _, plan, comparison, _ = compared
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    monkeypatch.setattr(compare_command, "table_console", lambda: console)
    compare_command.print_comparison(comparison, plan.target)
    text = console.export_text()
    table = text.split("Goal (")[0]
    assert "…" not in table and max(len(line) for line in table.splitlines()) <= width
    for _, row in comparison.strategies.iterrows():
        assert row.strategy in table and f"{100 * row.regret:.2f}% ± {100 * row.regret_se:.2f}" in table
    assert ("not shown at this width" in table) == (width == 80)


def test_mutransfer_is_anchored_at_the_smallest_rung():
    plan = tiny_plan()
    proxy, target = plan.in_mup(plan.base), plan.in_mup(plan.target)
    assert proxy.model.parametrization == target.model.parametrization == "mup"
    assert target.model.base_width == proxy.model.width == 16
    assert proxy.model.width_multiplier == 1.0 and target.model.width_multiplier == TARGET_WIDTH / 16
    # heads of a fixed size (8) are added with width: the attention scale stays the proxy's
    assert target.model.base_head_dim == target.model.head_dim == 8
    assert attention_scale(target.model) == attention_scale(proxy.model)
    deeper = default_rungs((32,), **{**TINY, "depth": 2})[0]
    assert plan.in_mup(deeper).model.parametrization == "completep"


def test_the_presets_put_the_target_far_above_the_rungs():
    for preset, factor in (("cpu", 16), ("gpu", 25)):
        plan = comparison_plan(preset)
        top = max((rung.scale() for rung in plan.rungs), key=lambda scale: scale.params)
        assert plan.target.scale().params >= factor * top.params
        # tokens grow in the same proportion as the parameters
        assert plan.target.scale().tokens / plan.target.scale().params == pytest.approx(
            top.tokens / top.params, rel=0.02
        )
        assert plan.truth_lrs >= 7 and plan.truth_span >= 16 and plan.truth_seeds >= 2 and plan.replay_seeds >= 100
    assert comparison_plan("cpu", replay_seeds=5).replay_seeds == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"truth_seeds": 1}, "truth_seeds must be at least 2"),
        ({"truth_lrs": 2}, "truth_lrs must be at least 3"),
        ({"truth_span": 1.0}, "truth_span must exceed 1"),
        ({"replay_seeds": 0}, "replay_seeds must be at least 1"),
        ({"lr_range": (1e-2, 1e-3)}, "lr_range"),
    ],
)
def test_bad_plans_are_refused(change, message):
    plan = tiny_plan()
    with pytest.raises(ValueError, match=message):
        ComparisonPlan(plan.rungs, plan.target, **change)


def test_a_target_no_larger_than_the_rungs_and_an_unknown_preset_are_refused():
    plan = tiny_plan()
    with pytest.raises(ValueError, match="larger than every rung"):
        ComparisonPlan(plan.rungs, plan.rungs[-1])
    with pytest.raises(ValueError, match="preset must be one of cpu, gpu"):
        comparison_plan("laptop")


def test_runs_at_fixed_lrs_train_in_several_jobs_each_once(tmp_path, code_corpus):
    """``jobs=2``: a helper process drains the same queue of LRs; each LR is trained once, by
    one of the two, and the calling process reports every run."""
    from tiny import long_rungs

    from optuna_lrlaw.integration.study import open_storage
    from optuna_lrlaw.ladder.run import SURPLUS_ATTR, WORKER_ATTR

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    events = Counter()
    training = {"corpus": code_corpus, "evals": 4, "eval_batches": 2}
    runner = compare_module._Runner(open_storage(url), "c", tiny_plan(), "cpu", 0, events, training, url, jobs=2)
    rung = long_rungs()[1]  # runs of several seconds each: the helper joins while the first runs
    lrs = [3e-3, 6e-3, 1.2e-2, 2.4e-2]
    runs = runner._train("grid", rung, lrs)
    assert sorted(runs) == lrs and all(run.state == optuna.trial.TrialState.COMPLETE for run in runs.values())
    study = optuna.load_study(study_name=f"c/compare/grid/{rung.name}/seed0", storage=url)
    trained = [t for t in study.trials if not t.user_attrs.get(SURPLUS_ATTR)]
    assert sorted(t.params["lr"] for t in trained) == lrs
    assert len({t.user_attrs[WORKER_ATTR] for t in trained}) == 2
    assert events.trials == len(lrs)
