import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[1]
STEPLAW_CSV = ROOT.parent / "shared" / "data" / "steplaw" / "dense_lr_bs_loss.csv"


@pytest.fixture(scope="session")
def steplaw_csv() -> Path:
    if not STEPLAW_CSV.exists():
        pytest.skip(f"the Step Law table is not at {STEPLAW_CSV}")
    return STEPLAW_CSV
