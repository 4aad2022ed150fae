"""Item pipelines of batchscraper, in order: extract, validate, store."""
