"""Modules generated from ../proto (see proto/generate.py)."""
