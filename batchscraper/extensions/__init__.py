"""Scrapy extensions of batchscraper."""
