"""`python -m targets.target_postgres`: run target-postgres."""

from targets.target_postgres.target import TargetPostgres

TargetPostgres.cli()
