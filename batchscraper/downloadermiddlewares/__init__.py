"""Downloader middlewares, laid out as Scrapy lays out its own.

- :mod:`.ssrf`: the address policy and the SSRF guard (middleware and DNS resolver);
- :mod:`.robots`: robots.txt with a per-batch choice and ``ROBOTS_DISALLOWED``;
- :mod:`.breaker`: per-domain health, backoff and the circuit breaker;
- :mod:`.retry`: retries with backoff honouring ``Retry-After``;
- :mod:`.failures`: what a download failure means for the item (its error code).
"""
