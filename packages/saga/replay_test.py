"""Saved histories of every saga path replay cleanly against the current workflow code."""

from __future__ import annotations

from importlib import resources

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from saga.converter import DATA_CONVERTER
from saga.workflow import OrderSaga

HISTORIES = sorted(
    entry.name
    for entry in resources.files("saga").joinpath("histories").iterdir()
    if entry.name.endswith(".json")
)


PATHS = (
    "confirmed",
    "out_of_stock",
    "declined",
    "cancelled_before_payment",
    "cancelled_after_capture",
)


def test_every_path_has_a_saved_history_of_each_version() -> None:
    # v1-*: recorded before the emits became local activities (workflow.patched
    # "local-emits"), v2-*: while they were (until "activity-emits"), v3-*: before payment
    # requests carried the correlation ("correlated-payments"), v4-*: before the lean
    # confirmed path ("lean-confirmed-path"). Sagas still running from then must replay
    # through the path they took.
    prefixes = ("", "v1-", "v2-", "v3-", "v4-")
    assert set(HISTORIES) >= {f"{prefix}{path}.json" for path in PATHS for prefix in prefixes}


@pytest.mark.parametrize("name", HISTORIES)
async def test_a_saved_history_replays_without_nondeterminism(name: str) -> None:
    text = resources.files("saga").joinpath("histories", name).read_text()
    history = WorkflowHistory.from_json(name.removesuffix(".json"), text)
    replayer = Replayer(workflows=[OrderSaga], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
