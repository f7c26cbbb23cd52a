"""Entry point of the `orderly` command: the verbs, grouped."""

from __future__ import annotations

import click

from cli.check import check_command
from cli.demo import demo_command
from cli.dlq import dlq_group
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
orderly.add_command(check_command)
orderly.add_command(migrate_command)
orderly.add_command(streams_command)
orderly.add_command(pending_command)
orderly.add_command(dlq_group)
orderly.add_command(projections_group)
orderly.add_command(sagas_group)


def main() -> None:
    orderly(prog_name="orderly")
