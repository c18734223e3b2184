"""`python -m taps.tap_postgres`: the tap's command line."""

from taps.tap_postgres.tap import TapPostgres

TapPostgres.cli()
