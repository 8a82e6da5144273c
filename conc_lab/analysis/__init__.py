"""Stage 5, analysis: statistics and summaries of stored runs; nothing here prints."""
