"""Several worker processes of one machine training one ladder's runs: ``run_ladder(jobs=K)``.

Any number of workers may share a ladder's storage (`run`: each rung's budget exact, no
LR trained twice, a dead worker's run retried). ``jobs=K`` starts K - 1 helpers beside
the calling process, each a plain `run_ladder` on the same storage in a fresh interpreter
(``python -m optuna_lrlaw.ladder._jobs FILE``, its arguments pickled into FILE): no fork of
a process that holds a CUDA context or open database connections, and no second run of
the caller's script. How many jobs pay on which device, and their threads:
`proxies.concurrency`.
"""

from __future__ import annotations

import contextlib
import pickle
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from optuna_lrlaw.proxies.concurrency import torch_threads

#: The last lines of a failed helper's output that its warning quotes.
_ERROR_LINES = 3


@contextlib.contextmanager
def helpers(
    count: int, work: Callable[..., object], arguments: dict[str, object], threads: int | None
) -> Iterator[list[subprocess.Popen]]:
    """``count`` helper processes each calling ``work(**arguments)`` (``work`` a function of a
    module, such as `run_ladder`) while the block runs (``with helpers(...) as processes``).

    When the block ends normally the helpers are waited for (they end with the ladder, whose
    last rung they wait on too); a helper that failed is reported in a warning (its runs were
    retried by the workers that remained). When the block raises, the helpers are stopped.

    Raises:
        ValueError: the arguments cannot travel to another process (a trainer defined in
            the calling script, a storage object instead of a URL).
    """
    storage = arguments.get("storage")
    if not isinstance(storage, str):
        raise ValueError(
            "jobs > 1 trains in worker processes, which open the storage themselves: give its URL "
            f"(sqlite:///ladder.db, postgresql://...), not a {type(storage).__name__} object"
        )
    try:
        payload = pickle.dumps((work, arguments, threads))
    except Exception as error:  # pickle raises several kinds
        raise ValueError(
            f"jobs > 1 trains in worker processes, which need the rungs and options picklable: {error}"
        ) from None
    if b"__main__" in payload:
        raise ValueError(
            "jobs > 1 trains in worker processes, which cannot import what the calling script defines "
            "(a TrainerRung's train function, say): move it into a module, or use jobs=1"
        )
    with tempfile.TemporaryDirectory(prefix="lrlaw-jobs-") as folder:
        task = Path(folder, "arguments.pickle")
        task.write_bytes(payload)
        logs = [Path(folder, f"helper-{index}.log") for index in range(count)]
        processes = []
        for log in logs:
            with log.open("w") as output:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "optuna_lrlaw.ladder._jobs", str(task)],
                        stdout=subprocess.DEVNULL,
                        stderr=output,
                    )
                )
        try:
            yield processes
        except BaseException:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait()
            raise
        for process, log in zip(processes, logs, strict=True):
            if process.wait() != 0:
                last = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
                warnings.warn(
                    f"a helper job (pid {process.pid}) failed, exit status {process.returncode}; the other jobs "
                    f"ran its trials: {' / '.join(last[-_ERROR_LINES:]) or 'no output'}",
                    RuntimeWarning,
                    stacklevel=3,
                )


def _main(task: str) -> int:
    """A helper: the pickled call, with its share of the threads."""
    work, arguments, threads = pickle.loads(Path(task).read_bytes())
    try:
        with torch_threads(threads):
            work(**arguments)
    except Exception as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
