"""Training proxies: learning, divergence, pruning, resuming, schedules and the Optuna objective."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

import optuna_lrlaw.proxies.train as train_module
from optuna_lrlaw import DIVERGED_ATTR, LRLawSampler, set_study_scale
from optuna_lrlaw.proxies import ProxyConfig, TrainConfig, builtin_corpus, prepare_corpus, proxy_objective, train_proxy
from optuna_lrlaw.proxies.model import build_model
from optuna_lrlaw.proxies.schedule import lr_factor
from optuna_lrlaw.proxies.train import PEAK_FLOPS, compile_pays

PACKAGE = Path(__file__).resolve().parents[1] / "optuna_lrlaw"
TINY = ProxyConfig(width=32, depth=1, heads=2, seq_len=32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return prepare_corpus(PACKAGE, tmp_path_factory.mktemp("corpus") / "corpus.bin", pattern="*.py", val_fraction=0.2)


def tiny_run(corpus, **fields) -> TrainConfig:
    settings = {"lr": 1e-2, "tokens": 2**14, "batch_size": 8, "evals": 4, "eval_batches": 2, "corpus": str(corpus.path)}
    return TrainConfig(**{"model": TINY, **settings, **fields})


def unigram_entropy(tokens: np.ndarray) -> float:
    p = np.bincount(np.asarray(tokens), minlength=256) / len(tokens)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_a_100k_parameter_proxy_learns_well_below_the_unigram_entropy_on_the_builtin_corpus():
    model = ProxyConfig(width=64, depth=2, heads=4, seq_len=128)
    assert 50_000 <= model.params() <= 200_000
    result = train_proxy(TrainConfig(model, lr=8e-3, tokens=2**18, batch_size=16, eval_batches=4), device="cpu")
    entropy = unigram_entropy(builtin_corpus().val)
    assert not result.diverged
    assert result.final_loss < entropy - 0.5, (result.final_loss, entropy)
    assert result.tokens == 2**18 and result.flops == model.flops_per_token() * 2**18
    assert result.tokens_per_second > 0 and result.mfu is None and result.device == "cpu"
    assert list(result.curve.columns) == ["step", "tokens", "lr", "train_loss", "val_loss"]
    assert result.curve["step"].tolist()[0] == 0 and result.curve["step"].tolist()[-1] == result.steps


def test_same_seed_same_run_and_another_seed_another_run(corpus):
    first, second = train_proxy(tiny_run(corpus), device="cpu"), train_proxy(tiny_run(corpus), device="cpu")
    assert first.final_loss == second.final_loss
    assert train_proxy(tiny_run(corpus, seed=1), device="cpu").final_loss != first.final_loss


def test_compilation_is_chosen_where_it_pays():
    """Never on the CPU or for MoE proxies; on a GPU for a dense model whose eager run is long
    (85M parameters at 20 tokens each), not for a ladder's rung (width 64, 1M tokens)."""
    h200 = PEAK_FLOPS["H200"]
    big = TrainConfig(ProxyConfig(width=768, depth=12, heads=12, seq_len=1024), lr=1e-3, tokens=85_000_000 * 20)
    rung = TrainConfig(ProxyConfig(width=64, depth=2, heads=4, seq_len=128), lr=1e-3, tokens=983_040)
    assert compile_pays(big, h200) and not compile_pays(big, None)
    assert not compile_pays(rung, h200)
    assert not compile_pays(replace(big, model=replace(big.model, n_experts=8, top_k=2)), h200)


def test_a_compiled_shape_is_reused_with_each_runs_own_weights(monkeypatch):
    """A second run of one shape gets the first one's compiled forward, its weights those a
    fresh model of its own seed has."""
    monkeypatch.setattr(train_module, "_COMPILED", {})
    first, second = (TrainConfig(TINY, lr=1e-2, tokens=2**14, seed=seed, compile=True) for seed in (0, 1))
    model, forward = train_module._model_for(first, torch.device("cpu"))
    again, forward_again = train_module._model_for(second, torch.device("cpu"))
    assert again is model and forward_again is forward
    torch.manual_seed(1)
    for mine, fresh in zip(again.state_dict().values(), build_model(TINY).state_dict().values(), strict=True):
        torch.testing.assert_close(mine, fresh)


def test_a_huge_learning_rate_diverges_without_raising(corpus):
    result = train_proxy(tiny_run(corpus, lr=30.0, tokens=2**15), device="cpu")
    assert result.diverged and result.divergence_reason
    assert result.steps < 2**15 // (8 * 32)  # stopped early
    assert result.final_loss == result.curve["val_loss"].iloc[0]  # scored as a model that learned nothing


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_validation_losses_are_reported_and_pruning_is_honoured(corpus):
    study = optuna.create_study(pruner=AlwaysPrune())
    objective = lambda trial: train_proxy(tiny_run(corpus), trial=trial, device="cpu").final_loss  # noqa: E731
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # pruned at the first report
    study = optuna.create_study()
    study.optimize(objective, n_trials=1)
    assert sorted(study.trials[0].intermediate_values) == [0, 16, 32, 48, 64]


class Killed(Exception):
    pass


class KillAt:
    """A trial stand-in that kills the run when it reports ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def report(self, value: float, step: int) -> None:
        if step == self.step:
            raise Killed

    def should_prune(self) -> bool:
        return False


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_result(corpus, tmp_path):
    config = tiny_run(corpus, checkpoint_dir=str(tmp_path))
    uninterrupted = train_proxy(replace(config, checkpoint_dir=None), device="cpu")
    with pytest.raises(Killed):
        train_proxy(config, trial=KillAt(48), device="cpu")
    assert len(list(tmp_path.glob("*.pt"))) == 1  # saved at step 32
    resumed = train_proxy(config, device="cpu")
    assert resumed.final_loss == uninterrupted.final_loss
    assert resumed.curve["val_loss"].tolist() == uninterrupted.curve["val_loss"].tolist()
    assert not list(tmp_path.glob("*.pt"))  # a finished run leaves no checkpoint


def test_wsd_runs_record_stable_phase_losses(corpus):
    result = train_proxy(tiny_run(corpus, schedule="wsd", cooldown_fraction=0.25, evals=8), device="cpu")
    stable = result.stable_losses
    assert list(stable.columns) == ["tokens", "val_loss"]
    assert len(stable) == 6  # evaluations at 1/8 .. 6/8 of the run; the cooldown starts at 6/8
    assert stable["tokens"].max() <= 0.75 * result.tokens
    assert train_proxy(tiny_run(corpus), device="cpu").stable_losses.empty


def test_more_than_one_epoch_warns(tmp_path):
    text = tmp_path / "small.txt"
    text.write_text((PACKAGE / "proxies" / "model.py").read_text())
    small = prepare_corpus(text, tmp_path / "small.bin")
    with pytest.warns(UserWarning, match="epochs of the training split"):
        result = train_proxy(tiny_run(small, tokens=len(small.train) + 2**12, evals=1), device="cpu")
    assert result.epochs > 1


def test_moe_proxies_train(corpus):
    moe = replace(TINY, n_experts=4, top_k=2, parametrization="mup")
    result = train_proxy(tiny_run(corpus, model=moe), device="cpu")
    assert not result.diverged and result.final_loss < result.curve["val_loss"].iloc[0]
    assert result.flops == moe.flops_per_token() * result.tokens
    assert tiny_run(corpus, model=moe).scale().active_params == moe.active_params()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lr": -1.0}, "lr must be finite"),
        ({"schedule": "step"}, "schedule must be one of"),
        ({"tokens": 10}, "less than one batch"),
        ({"warmup_fraction": 1.0}, "warmup_fraction"),
    ],
)
def test_bad_training_configs_are_refused(corpus, fields, message):
    with pytest.raises(ValueError, match=message):
        tiny_run(corpus, **fields)


def test_a_corpus_with_more_tokens_than_the_model_is_refused(corpus):
    with pytest.raises(ValueError, match="vocab_size"):
        train_proxy(tiny_run(corpus, model=replace(TINY, vocab_size=100)), device="cpu")
    with pytest.raises(ValueError, match="vocab_size"):  # also when the corpus is passed in opened
        train_proxy(tiny_run(corpus, model=replace(TINY, vocab_size=100)), device="cpu", corpus=corpus)


def test_schedules_warm_up_then_decay_to_their_floor():
    factors = {
        name: [lr_factor(s, 100, schedule=name, warmup_steps=10, cooldown_fraction=0.2) for s in range(100)]
        for name in ("cosine", "linear", "wsd")
    }
    for values in factors.values():
        assert values[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
        assert max(values) == 1.0
    assert factors["cosine"][-1] == pytest.approx(0.1, abs=1e-3)
    assert factors["linear"][-1] == pytest.approx(1 / 90)
    assert factors["wsd"][10:80] == [1.0] * 70 and factors["wsd"][-1] == pytest.approx(1 / 20)


def test_proxy_objective_records_scale_cost_and_divergence(corpus):
    objective = proxy_objective(
        TINY,
        tokens=2**14,
        batch_size=8,
        lr_range=(1e-3, 100.0),
        evals=2,
        eval_batches=2,
        corpus=str(corpus.path),
        device="cpu",
    )
    study = optuna.create_study(sampler=LRLawSampler(seed=0))
    set_study_scale(study, objective.scale)
    study.enqueue_trial({"lr": 1e-2})
    study.enqueue_trial({"lr": 80.0})
    study.optimize(objective, n_trials=2)
    good, bad = study.trials
    assert good.user_attrs[DIVERGED_ATTR] is False and bad.user_attrs[DIVERGED_ATTR] is True
    assert good.value < bad.value
    assert good.user_attrs["lrlaw.params"] == TINY.params() and good.user_attrs["lrlaw.tokens"] == 2**14
    assert good.user_attrs["flops"] == TINY.flops_per_token() * 2**14 and math.isfinite(good.user_attrs["wall_seconds"])
    with pytest.raises(ValueError, match="lr_range"):
        proxy_objective(TINY, tokens=2**14, lr_range=(1e-2, 1e-3))


def test_the_proxy_study_example_runs(tmp_path):
    import subprocess
    import sys

    example = PACKAGE.parent / "examples" / "proxy_study.py"
    storage = f"sqlite:///{tmp_path / 'example.db'}"
    out = subprocess.run(
        [sys.executable, str(example), "--trials", "2", "--tokens", str(2**14), "--storage", storage],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "best lr" in out.stdout
    study = optuna.load_study(study_name="proxy-w64", storage=storage)
    assert len(study.trials) == 2 and study.user_attrs["lrlaw.params"] == 98624
