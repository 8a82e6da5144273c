"""Stage 4, store: the only package that touches result files (journal, Parquet, manifest, merge, check)."""
