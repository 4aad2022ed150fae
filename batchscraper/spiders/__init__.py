"""Spiders of batchscraper: one generic spider, ``batch``."""
