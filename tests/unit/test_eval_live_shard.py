"""``umiq eval live --shard K/N``: parsing and validation (the merge is in test_eval_report)."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.evaluation.cli.cmd_live import parse_shard
from worker.evaluation.live import LiveConfig


@pytest.mark.parametrize(("text", "parts"), [("1/2", (1, 2)), ("3/3", (3, 3)), (None, None)])
def test_a_shard_is_read_as_k_of_n(text: str | None, parts: tuple[int, int] | None) -> None:
    assert parse_shard(text) == parts


@pytest.mark.parametrize("text", ["2", "a/b", "1/", "/2"])
def test_a_shard_that_is_not_k_of_n_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="K/N"):
        parse_shard(text)


@pytest.mark.parametrize("parts", [(0, 2), (3, 2), (1, 0)])
def test_a_shard_outside_its_run_is_refused(tmp_path: Path, parts: tuple[int, int]) -> None:
    with pytest.raises(ConfigError, match="1 <= K <= N"):
        LiveConfig(out=tmp_path, shard=parts)
