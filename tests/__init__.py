"""Test suite package (a package so scripts can ``from tests.harness import ...``)."""
