"""`python -m ocidist` runs the `dist` command."""

from ocidist.cli.program import run

run()
