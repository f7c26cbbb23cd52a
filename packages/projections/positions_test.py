import pytest

from projections.positions import StreamPosition


def test_positions_compare_numerically_not_as_text() -> None:
    assert StreamPosition.parse("9-0") < StreamPosition.parse("10-0")
    assert StreamPosition.parse("10-2") < StreamPosition.parse("10-10")
    assert str(StreamPosition.parse("1732790000000-3")) == "1732790000000-3"


@pytest.mark.parametrize("bad", ["", "x-1", "1-y", "-"])
def test_bad_entry_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a stream entry id"):
        StreamPosition.parse(bad)
