"""Entry point of the `orderly` command: the verbs, grouped."""

from __future__ import annotations

import os
import sys
import traceback

import click

from cli.check import check_command
from cli.demo import demo_command
from cli.dlq import dlq_group
from cli.errors import one_line
from cli.load import load_command
from cli.migrate import migrate_command
from cli.pending import pending_command
from cli.projections import projections_group
from cli.sagas import sagas_group
from cli.streams import streams_command
from cli.up import up_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def orderly() -> None:
    """orderly: event-sourced order processing on Redis Streams, Temporal and Postgres."""


orderly.add_command(up_command)
orderly.add_command(demo_command)
orderly.add_command(load_command)
orderly.add_command(check_command)
orderly.add_command(migrate_command)
orderly.add_command(streams_command)
orderly.add_command(pending_command)
orderly.add_command(dlq_group)
orderly.add_command(projections_group)
orderly.add_command(sagas_group)


def main() -> None:
    try:
        orderly(prog_name="orderly")
    except SystemExit as exit_:
        status = exit_.code
    except Exception as exc:  # - the last line of defence, see below
        # A failure no verb foresaw (a server answering nonsense, a bug) is still one line for
        # the operator; ORDERLY_LOG_LEVEL=DEBUG adds the traceback for whoever fixes it.
        if os.environ.get("ORDERLY_LOG_LEVEL", "").upper() == "DEBUG":
            traceback.print_exc()
        click.echo(f"Error: unexpected {type(exc).__name__}: {one_line(exc)}", err=True)
        status = 1
    else:
        status = 0
    if not isinstance(status, int):
        if status is not None:
            click.echo(status, err=True)
        status = 0 if status is None else 1
    # End here, without the interpreter's finalization: the Temporal client's native threads
    # (check, sagas) can outlive the event loop, and finalizing under them aborts the process
    # (SIGABRT, "PyGILState_Release: thread state ... must be current") after its work is done,
    # about one run in ten (temporalio/sdk-python#300). Every verb has finished and cleaned up
    # by now; only the output buffers are left to flush.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
