"""`python -m workbench.cli ...`: the same as the `workbench` console script."""

from workbench.cli import run

run()
