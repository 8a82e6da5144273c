"""Stage 2, plan: a ``Config`` expanded into trials and put in run order, as plain data."""
