"""`python -m taps.tap_mysql`: the `tap-mysql` command."""

from taps.tap_mysql.tap import TapMySQL

TapMySQL.cli()
