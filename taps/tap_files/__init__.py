"""tap-files: the built-in Singer tap for local CSV, JSONL and Parquet files."""
