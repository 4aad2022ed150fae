"""The baseline for bench/throughput.py: a bare Scrapy spider that only fetches.

scrapy runspider bench/bare_spider.py -a urls_file=urls.txt -s CONCURRENT_REQUESTS=16
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import scrapy


class BareSpider(scrapy.Spider):
    name = "bare"
    custom_settings = {
        "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
        "TELNETCONSOLE_ENABLED": False,
        "REMOTE_CONTROL_ENABLED": False,
        "ROBOTSTXT_OBEY": False,
        "COOKIES_ENABLED": False,
    }

    def __init__(self, urls_file: str, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.urls_file = Path(urls_file)

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for url in self.urls_file.read_text().split():
            yield scrapy.Request(url, dont_filter=True)

    def parse(self, response: scrapy.http.Response) -> None:
        self.crawler.stats.inc_value("bare/pages")
