"""Stage 1, config: an experiment matrix file read, validated and frozen into a ``Config``.

``document.load_config`` / ``parse_config`` is the way in. ``yaml_safe`` reads the file,
``validate`` and ``sections`` check each value and section, ``checks`` asks a child process
about the workloads (none is imported here) and starts the interpreters named, ``model`` holds
the frozen ``Config`` and the matrix's vocabulary, ``errors`` the one-line ``ConfigError``.
"""
