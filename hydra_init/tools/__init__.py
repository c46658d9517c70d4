"""Tools around the engine: the ``hydra-init`` command, progress lines and sweep pictures."""
