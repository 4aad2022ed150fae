"""The bundled example site that `batchscraper demo` and the tests crawl."""
