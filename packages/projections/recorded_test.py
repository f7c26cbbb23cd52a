from datetime import UTC, datetime, timedelta, timezone

from contracts import StockReceived, encode_envelope, new_envelope
from projections.positions import StreamPosition
from projections.recorded import Recorded

PLUS_TWO = timezone(timedelta(hours=2))
SENT = datetime(2026, 11, 28, 11, 30, tzinfo=PLUS_TWO)  # 09:30 UTC
STREAM = "orderly:stream:{catalog:0}"
POSITION = StreamPosition(1, 0)


def stock_received_at(time: datetime) -> bytes:
    event = StockReceived(sku="SKU-1", quantity=1, warehouse="wh-1")
    return encode_envelope(new_envelope(event, source="/tests", subject="SKU-1", time=time))


def test_a_live_entry_s_time_is_in_utc_whatever_offset_the_sender_wrote() -> None:
    record = Recorded.decode(STREAM, POSITION, stock_received_at(SENT))
    assert record.time == SENT and record.time.tzinfo is UTC
    assert record.time.isoformat() == "2026-11-28T09:30:00+00:00"


def test_a_time_given_with_an_offset_is_kept_in_utc() -> None:
    # The archive's column comes back in UTC already, but the constructor does not rely on it.
    record = Recorded(
        STREAM,
        POSITION,
        b"",
        source="/tests",
        id="e-1",
        type="orderly.StockReceived.v1",
        subject="SKU-1",
        time=SENT,
    )
    assert record.time == SENT and record.time.tzinfo is UTC


def test_a_utc_time_is_kept_as_it_is() -> None:
    at = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    record = Recorded.decode(STREAM, POSITION, stock_received_at(at))
    assert record.time == at and record.time.tzinfo is UTC
