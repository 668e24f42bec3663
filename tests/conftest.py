import os
import sys
from pathlib import Path

import pytest

from optuna_lrlaw.science.steplaw import WHERE_TO_GET

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[1]
#: Step Law's public table: $LRLAW_STEPLAW_CSV, else where ../shared/ keeps a copy.
STEPLAW_CSV = Path(
    os.environ.get("LRLAW_STEPLAW_CSV", ROOT.parent / "shared" / "data" / "steplaw" / "dense_lr_bs_loss.csv")
)


@pytest.fixture(scope="session")
def steplaw_csv() -> Path:
    if not STEPLAW_CSV.is_file():
        pytest.skip(f"no Step Law table at {STEPLAW_CSV} (set LRLAW_STEPLAW_CSV): {WHERE_TO_GET}")
    return STEPLAW_CSV


@pytest.fixture(scope="session")
def code_corpus(tmp_path_factory) -> str:
    """A corpus of Python source for proxies that train in seconds: the standard library's
    ``email`` package (378 kB), which stays the same from one commit to the next (this
    package's own source, used before, changed the tests' training data with every edit)."""
    import email

    from optuna_lrlaw.proxies import prepare_corpus

    path = tmp_path_factory.mktemp("corpus") / "corpus.bin"
    return str(prepare_corpus(Path(email.__file__).parent, path, pattern="*.py").path)


@pytest.fixture
def postgres_url():
    """A fresh, empty database on the PostgreSQL server that ``LRLAW_TEST_POSTGRES_URL`` names
    (`.ci/run` starts one on 127.0.0.1), dropped after the test."""
    yield from _fresh_database("LRLAW_TEST_POSTGRES_URL", "(.ci/run starts one on 127.0.0.1)", " WITH (FORCE)")


@pytest.fixture
def mysql_url():
    """A fresh, empty database on the MySQL or MariaDB server that ``LRLAW_TEST_MYSQL_URL``
    names (``mysql+pymysql://USER:PASSWORD@HOST:PORT/DB``, a user who may create databases)."""
    pytest.importorskip("pymysql", reason="the mysql extra (PyMySQL) is not installed")
    yield from _fresh_database("LRLAW_TEST_MYSQL_URL", "(.ci/run starts MariaDB on 127.0.0.1)", "")


def _fresh_database(variable: str, where: str, drop_options: str):
    import os
    import uuid

    import sqlalchemy

    server = os.environ.get(variable)
    if not server:
        pytest.skip(f"no database server: {variable} is unset {where}")
    name = f"lrlaw_test_{uuid.uuid4().hex[:12]}"
    quote = "`" if server.startswith("mysql") else '"'
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {quote}{name}{quote}"))
    yield f"{server.rsplit('/', 1)[0]}/{name}"
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"DROP DATABASE {quote}{name}{quote}{drop_options}"))
    admin.dispose()


def _hypothesis_profiles() -> None:
    import os

    from hypothesis import settings

    # CI replays a fixed set of examples, so a landing never hinges on a new random draw;
    # locally every run explores new ones.
    settings.register_profile("ci", derandomize=True)
    settings.register_profile("explore", max_examples=2000)
    if os.environ.get("CI"):
        settings.load_profile("ci")
    elif os.environ.get("HYPOTHESIS_PROFILE"):
        settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])


_hypothesis_profiles()
