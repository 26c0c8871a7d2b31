"""Target-node selection by a job's tags, as Dkron does it (reference §5.5).

Each job tag is `"value[:count]"`: a node qualifies when it is alive, in the leader's region
and has every tag key with exactly that value (AND). The smallest count over all tags caps how
many qualifying nodes run the job, chosen at random without replacement; no count anywhere means
all of them; a count that is not a number means none. The caller supplies the randomness.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


class TargetError(ValueError):
    """No node can run the job; the message says why."""


def parse_job_tags(tags: dict[str, str] | None) -> tuple[dict[str, str], int | None]:
    """Split `{"k": "v:2"}` into required values and the cardinality (None = unlimited).

    Tags that are not a mapping of text (a job stored by an older version) select no node
    (cardinality 0) rather than every node."""
    required: dict[str, str] = {}
    cardinality: int | None = None
    if tags is not None and not isinstance(tags, dict):
        return required, 0
    for key, raw in (tags or {}).items():
        if not isinstance(raw, str):
            return {}, 0
        value, sep, count_text = raw.partition(":")
        required[key] = value
        if sep:
            try:
                count = int(count_text)
            except ValueError:
                count = 0
            cardinality = count if cardinality is None else min(cardinality, count)
    return required, cardinality


def select_targets(
    job_name: str,
    tags: dict[str, str] | None,
    members: Sequence[dict],
    region: str,
    rng: random.Random,
) -> list[dict]:
    """Choose the members (Dkron's member dicts) that run one launch of the job."""
    required, cardinality = parse_job_tags(tags)
    candidates = [
        m
        for m in members
        if m.get("statusText", "alive") == "alive"
        and m.get("Tags", {}).get("region", region) == region
        and all(m.get("Tags", {}).get(k) == v for k, v in required.items())
    ]
    candidates.sort(key=lambda m: m["Name"])
    if not candidates:
        raise TargetError(f"no target nodes found to run job {job_name}")
    if cardinality is None or len(candidates) <= cardinality:
        return candidates
    if cardinality <= 0:
        raise TargetError(f"no target nodes found to run job {job_name} (tag count is 0)")
    return rng.sample(candidates, cardinality)
