"""elt: a local-first ELT framework — Singer connectors, dbt models and Python blocks in one project."""

__version__ = "0.1.0"
