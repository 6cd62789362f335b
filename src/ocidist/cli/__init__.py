"""The `dist` command line."""
