"""Tiny ladders for tests: rungs of 3.1k and 6.9k parameters that train in a second or two on
a CPU, with an optimum near 2e-2 to 3e-2 inside the searched range (the corpus: the ``code_corpus``
fixture, the standard library's email package)."""

TINY = {"depth": 1, "head_dim": 8, "seq_len": 32, "batch_size": 8, "tokens_per_param": 8.0}
WIDTHS = (16, 24)
TRAINING = {"device": "cpu", "evals": 4, "eval_batches": 2}


def long_rungs():
    """The tiny ladder trained 4x longer (390 and 873 steps), for runs that last long enough
    to be killed between their checkpoints."""
    from optuna_lrlaw.ladder import default_rungs

    return default_rungs(WIDTHS, **{**TINY, "tokens_per_param": 4 * TINY["tokens_per_param"]})
