"""Storage and compute backends behind the two seams of ``dstack.backends.base``."""
