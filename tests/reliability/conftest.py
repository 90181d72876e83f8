"""One run context for the whole session: every short scenario's process logs land in one
directory, which the log scan reads at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reliability.stack import RunContext


@pytest.fixture(scope="session")
def reliability_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunContext]:
    yield RunContext(log_dir=tmp_path_factory.mktemp("reliability-logs"), short=True, assert_timing=False)
