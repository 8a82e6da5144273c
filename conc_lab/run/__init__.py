"""Stage 3, run: the driver, where runs execute (local or cluster), and the handle on each trial host."""
