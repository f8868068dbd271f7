"""Messages of `cam --targets` files: counts with the right number."""

import pytest

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.io.targets import read_targets


@pytest.mark.parametrize(("row", "expected"), [("a.png\n", "row 1 has 1 column;"),
                                               ("a.png,0,1,2\n", "row 1 has 4 columns;")])
def test_column_counts_read_as_english(tmp_path, row, expected):
    path = tmp_path / "targets.csv"
    path.write_text(row)
    with pytest.raises(CnnvizError) as raised:
        read_targets(path, int)
    assert expected in str(raised.value) and str(raised.value).endswith(".")

