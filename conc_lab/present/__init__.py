"""Stage 6, present: summaries as terminal tables, CSV/Markdown/JSON, and the HTML report."""
