"""`dist serve`: the store, metadata and higher operations over gRPC.

The content, images and leases services are wire-compatible with containerd's
(``containerd.services.*.v1``), so containerd clients such as ``ctr`` work
against a ``dist serve`` socket; ``ocidist.v1.Distribution`` carries our own
higher operations. ``client.py`` is the other side, used by ``dist --address``.
Messages come from ``proto/`` (generated into ``gen/`` by `make proto`).
"""
