"""Dataset files (CSV and Parquet): pure, no database."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.tablefiles import FileLimits
from monitoring.tabular import TableError, read_dataset

NAMES = ["a", "b", "c"]
LIMITS = FileLimits(max_rows=1_000, max_decoded_bytes=1_000_000)


def parse_csv(data: bytes, *, feature_names: list[str]):
    return read_dataset(data, filename="data.csv", feature_names=feature_names, limits=LIMITS)


def test_it_reorders_columns_to_the_schema_and_keeps_labels_as_strings():
    table = parse_csv(b"\xef\xbb\xbfc, label ,a,b\n3,yes,1,2\n6,no,4,5\n\n", feature_names=NAMES)

    assert np.array_equal(table.X, [[1, 2, 3], [4, 5, 6]])
    assert list(table.y) == ["yes", "no"]


def test_without_a_label_column_there_are_no_labels():
    assert parse_csv(b"a,b,c\n1,2,3\n", feature_names=NAMES).y is None


@pytest.mark.parametrize(
    ("data", "message", "line", "column"),
    [
        (b"", "The file is empty.", None, ""),
        (b"a,b\n1,2\n", "lacks feature column(s): c", 1, "c"),
        (b"a,b,c,d\n1,2,3,4\n", "does not know: d", 1, "d"),
        (b"a,b,c,a\n", "names the column 'a' twice", 1, "a"),
        (b"a,b,c\n", "a header but no rows", 2, ""),
        (b"a,b,c\n1,2,3\n1,2\n", "Line 3 has 2 values; the header has 3", 3, ""),
        (b"a,b,c\n1,,3\n", "Line 2, column 'b': is empty", 2, "b"),
        (b"a,b,c\n1,2,3\n1,2,x7\n", "Line 3, column 'c': 'x7' is not a number", 3, "c"),
        (b"a,b,c\n1,2,inf\n", "Line 2, column 'c': 'inf' is not finite", 2, "c"),
        (b"a,b,c,label\n1,2,3, \n", "Line 2, column 'label': the label is empty", 2, "label"),
        (b"a,b,c\n\xff,2,3\n", "not UTF-8", None, ""),
    ],
)
def test_it_names_the_line_and_column_of_the_first_problem(data, message, line, column):
    with pytest.raises(TableError) as failure:
        parse_csv(data, feature_names=NAMES)

    assert message in failure.value.message
    assert (failure.value.line, failure.value.column) == (line, column)
