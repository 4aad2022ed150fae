"""batchscraper: lists of URLs in, validated structured records out."""
