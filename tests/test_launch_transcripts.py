"""Launch-protocol scenarios as data-driven transcripts (tests/testdata/launch/*.txt).

Each file drives `launch.LeaderCore` over a real job store and lists every action it emits;
`launch_transcript.py` describes the syntax. After a deliberate behaviour change, regenerate
the expected blocks with `REWRITE=1 pytest tests/test_launch_transcripts.py` and review the diff.
"""

from __future__ import annotations

import pytest
from launch_transcript import TESTDATA, check_file

FILES = sorted(TESTDATA.glob("*.txt"))


def test_there_are_transcripts() -> None:
    assert FILES, f"no transcripts in {TESTDATA}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript(path) -> None:
    diff = check_file(path)
    if diff:
        pytest.fail(f"{path.name} differs from what the core does:\n{diff}", pytrace=False)
