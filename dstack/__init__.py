"""dstack: run ML workflows declared in a git repository, locally or on AWS."""

__version__ = "0.1.0"
