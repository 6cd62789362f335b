"""`python -m ocidist` runs the `dist` command."""

from ocidist.cli.main import run

run()
