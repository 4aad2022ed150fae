"""``scrapy crawl``, with the batch spider's inputs checked before anything starts.

Bad input to ``scrapy crawl batch`` ends with exit code 2 and one readable
line naming the argument and every problem; nothing is stored. Once the crawl
ran, the exit code says how the batch ended: 0 when it completed, 1 when it
is partial, failed or cancelled (or was left unfinished), the rule of
``batchscraper submit --wait`` (``BATCH_CRAWL_EXIT_BY_STATUS``). Other
spiders run exactly as with Scrapy's own command.
"""

from __future__ import annotations

import argparse
import sys

from scrapy import Spider
from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.crawler import Crawler

from batchscraper.exceptions import BatchError, BatchInputError, BatchStateError
from batchscraper.inputs import (
    RUN_TIME_OPTIONS,
    Limits,
    parse_batch,
    parse_more_urls,
    parse_options,
)
from batchscraper.llm.config import LLMConfig
from batchscraper.reextract import reextract_spec
from batchscraper.store import store_for

INPUT_ARGS = ("urls", "schema", "prompt", "options")
FINAL_STATUSES = ("completed", "partial", "failed", "cancelled")
EXIT_BAD_INPUT = 2
EXIT_NOT_COMPLETED = 1


class Command(ScrapyCrawlCommand):
    crawler: Crawler | None = None

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        """Runs before Scrapy sets up logging and the reactor, so an error stays one line."""
        super().process_options(args, opts)
        if args[:1] == ["batch"]:
            try:
                opts.spargs = self._checked_batch_args(opts.spargs)
            except BatchError as exc:
                sys.stderr.write(f"scrapy crawl batch: error: {exc}\n")
                sys.exit(EXIT_BAD_INPUT)

    def _create_crawler(self, spname: str | type[Spider]) -> Crawler:
        self.crawler = super()._create_crawler(spname)
        return self.crawler

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        super().run(args, opts)
        settings = self.settings
        assert settings is not None
        if self.exitcode or args[:1] != ["batch"] or self.crawler is None:
            return
        if settings.getbool("BATCH_CRAWL_EXIT_BY_STATUS"):
            assert self.crawler.stats is not None
            status = self.crawler.stats.get_value("batch/status")
            self.exitcode = 0 if status == "completed" else EXIT_NOT_COMPLETED

    def _checked_batch_args(self, spargs: dict[str, str]) -> dict[str, object]:
        """Parse the batch inputs (or check the batch id) and hand the spider the result."""
        settings = self.settings
        assert settings is not None
        if spargs.get("batch_id"):
            return self._checked_resume(spargs)
        if spargs.get("append_to"):
            return self._checked_resume(self._appended(spargs))
        inputs = {key: spargs.get(key) for key in INPUT_ARGS}
        passthrough = {k: v for k, v in spargs.items() if k.startswith("_")}
        source = spargs.get("reextract_from")
        option_args = {
            k: v for k, v in spargs.items()
            if k not in INPUT_ARGS and k not in passthrough and k != "reextract_from"
        }
        limits = Limits.from_settings(settings, read_files=True)
        if not source:
            return {"spec": parse_batch(limits=limits, **inputs, **option_args), **passthrough}
        if inputs.pop("urls"):
            raise BatchInputError("reextract_from: uses the source batch's URLs; drop urls")
        store = store_for(settings.get("MONGO_URI") or None)
        spec = reextract_spec(store, source, limits=limits,
                              llm_configured=LLMConfig.from_settings(settings).configured,
                              **inputs, **option_args)
        return {"spec": spec, "reextract_from": source, **passthrough}

    def _appended(self, spargs: dict[str, str]) -> dict[str, str]:
        """``-a append_to=b_... -a urls=...``: the URLs added to that batch (reopened if it
        ended); the crawl then works the batch like ``-a batch_id``."""
        settings = self.settings
        assert settings is not None
        batch_id = spargs["append_to"]
        given = {k: v for k, v in spargs.items() if k not in ("append_to", "urls")}
        stray = sorted(k for k in given if k not in RUN_TIME_OPTIONS and not k.startswith("_"))
        if stray:
            raise BatchInputError(
                f"append_to: cannot be combined with {stray}; the URLs get the batch's schema,"
                f" prompt and options (only {list(RUN_TIME_OPTIONS)} can be given for this run)"
            )
        limits = Limits.from_settings(settings, read_files=True)
        parse_options({k: v for k, v in given.items() if not k.startswith("_")})
        store = store_for(settings.get("MONGO_URI") or None)
        urls = parse_more_urls(spargs.get("urls"), store.get_batch(batch_id), limits)
        first = store.append_urls(batch_id, urls, limits.max_urls)
        sys.stderr.write(f"Appended {len(urls)} URLs to batch {batch_id} (indexes {first}-"
                         f"{first + len(urls) - 1})\n")
        return {"batch_id": batch_id, **given}

    def _checked_resume(self, spargs: dict[str, str]) -> dict[str, object]:
        """``-a batch_id``: an unfinished stored batch, with run-time options for this run only."""
        settings = self.settings
        assert settings is not None
        batch_id = spargs["batch_id"]
        given = {k: v for k, v in spargs.items() if k != "batch_id" and not k.startswith("_")}
        stray = sorted(set(given) - set(RUN_TIME_OPTIONS))
        if stray:
            raise BatchInputError(
                f"batch_id: cannot be combined with {stray}; a stored batch keeps its inputs"
                f" and options (only {list(RUN_TIME_OPTIONS)} can be given for this run)"
            )
        parse_options(given)  # in range, or refused before anything runs
        batch = store_for(settings.get("MONGO_URI") or None).get_batch(batch_id)
        # a Scrapyd job (`_job`) that starts after its batch ended has nothing to do: not an error
        if batch["status"] in FINAL_STATUSES and not spargs.get("_job"):
            retry = ("" if batch["status"] == "cancelled"
                     else f", or its failed items with `batchscraper retry {batch_id}`")
            raise BatchStateError(
                f"batch {batch_id} is already {batch['status']}: batch_id only resumes"
                f" unfinished items. Re-run its inputs as a new batch with `batchscraper submit"
                f" --rerun-of {batch_id}` (API: rerun_of){retry}"
            )
        return dict(spargs)
