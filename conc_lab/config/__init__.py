"""Stage 1, config: an experiment matrix file read, validated and frozen into a ``Config``."""
