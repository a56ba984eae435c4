"""Where and when: geo/time metadata, the ``"geo"`` encoder, a presence-only prior and range maps."""
