import msgspec
import pytest

from payment_provider_sim.faults import FaultKnobs, Faults, FaultsUpdate, OutageWindow


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_faults_by_default() -> None:
    faults = Faults(FaultKnobs())
    assert not faults.in_outage()
    assert not any(faults.lose_this_reply() for _ in range(100))


def test_outage_windows_count_from_the_start() -> None:
    clock = FakeClock()
    faults = Faults(FaultKnobs(outages=(OutageWindow(10, 20),)), clock=clock)
    seen = []
    for uptime in (0, 9.9, 10, 19.9, 20, 30):
        clock.now = 100.0 + uptime
        seen.append(faults.in_outage())
    assert seen == [False, False, True, True, False, False]


def test_outage_for_s_ends_by_itself_and_the_switch_does_not() -> None:
    clock = FakeClock()
    faults = Faults(FaultKnobs(), clock=clock)
    clock.now += 5
    faults.update(FaultsUpdate(outage_for_s=2))
    assert faults.knobs.outages == (OutageWindow(5, 7),)
    assert faults.in_outage()
    clock.now += 2
    assert not faults.in_outage()

    clock.now += 0.0006  # an uptime that rounds up to the millisecond
    faults.update(FaultsUpdate(outage_for_s=2))
    assert faults.in_outage(), "the outage starts now, not a moment later"

    faults.update(FaultsUpdate(outage=True))
    clock.now += 1000
    assert faults.in_outage()
    faults.update(FaultsUpdate(outage=False))
    assert not faults.in_outage()


def test_ambiguous_next_loses_exactly_that_many_replies() -> None:
    faults = Faults(FaultKnobs())
    faults.update(FaultsUpdate(ambiguous_next=2))
    assert [faults.lose_this_reply() for _ in range(4)] == [True, True, False, False]
    assert faults.knobs.ambiguous_next == 0


def test_the_ambiguous_rate_is_reproducible_with_a_seed() -> None:
    runs = []
    for _ in range(2):
        faults = Faults(FaultKnobs(ambiguous_rate=0.3), seed=7)
        runs.append([faults.lose_this_reply() for _ in range(1000)])
    assert runs[0] == runs[1]
    assert 200 < sum(runs[0]) < 400


def test_an_update_changes_only_what_it_names() -> None:
    faults = Faults(FaultKnobs(latency_ms=50, ambiguous_rate=0.5))
    faults.update(msgspec.json.decode(b'{"ambiguous_mode": "504"}', type=FaultsUpdate))
    assert faults.knobs == FaultKnobs(latency_ms=50, ambiguous_rate=0.5, ambiguous_mode="504")


@pytest.mark.parametrize(
    "body",
    [
        b'{"latency": 5}',
        b'{"ambiguous_rate": 1.5}',
        b'{"outages": [[5, 2]]}',
        b'{"ambiguous_mode": "abort"}',
        b'{"outage_for_s": 0}',
    ],
)
def test_bad_updates_are_refused(body: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(body, type=FaultsUpdate)
