"""When an import file is done: a layout's first file smaller, doubling up to the full bound."""

from __future__ import annotations

import pytest

from worker.fullsync.import_files import FILE_BYTES, FILE_ROWS, FIRST_FILE_ROWS, ImportFile, full


def _file(rows: int, size: int = 0) -> ImportFile:
    return ImportFile(0, "com.apsis1.sections.s", "in", rows=rows, size=size)


@pytest.mark.parametrize(
    ("rows", "earlier", "done"),
    [
        (FIRST_FILE_ROWS - 1, 0, False),
        (FIRST_FILE_ROWS, 0, True),  # the layout's first file: small, so APSIS starts early
        (FIRST_FILE_ROWS, 1, False),
        (min(2 * FIRST_FILE_ROWS, FILE_ROWS), 1, True),  # the second: twice as large, at most FILE_ROWS
        (FILE_ROWS - 1, 10, False),
        (FILE_ROWS, 10, True),  # never beyond FILE_ROWS
        (FILE_ROWS, 1000, True),
    ],
)
def test_a_layouts_files_grow_to_the_bound(rows: int, earlier: int, done: bool) -> None:
    assert FIRST_FILE_ROWS < FILE_ROWS  # the table assumes the default bounds
    assert full(_file(rows), earlier) is done


def test_bytes_bound_a_file_whatever_its_rows() -> None:
    assert full(_file(1, FILE_BYTES), 0)
    assert not full(_file(1, FILE_BYTES - 1), 0)
