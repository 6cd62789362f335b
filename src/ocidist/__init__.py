"""ocidist: OCI image distribution primitives and the `dist` command."""

__version__ = "0.1.0"
