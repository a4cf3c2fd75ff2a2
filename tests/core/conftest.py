from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.core.embedded import DataDir, build_template, copy_data_dir


@pytest.fixture(scope="session")
def template_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One initialised and migrated embedded data directory, stopped, to copy from."""
    return build_template(tmp_path_factory.mktemp("embedded") / "template")


@pytest.fixture
def data_dirs(template_data_dir: Path, tmp_path: Path) -> Iterator[Callable[[], DataDir]]:
    """Copies of the template, each with its own PostgreSQL port; stopped afterwards."""
    made: list[DataDir] = []

    def make() -> DataDir:
        made.append(copy_data_dir(template_data_dir, tmp_path / f"data{len(made)}"))
        return made[-1]

    yield make
    for data_dir in made:
        data_dir.cleanup()
