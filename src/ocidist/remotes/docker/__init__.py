"""remotes.docker package."""
