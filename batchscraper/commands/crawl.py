"""``scrapy crawl``, with the batch spider's inputs checked before anything starts.

Bad input to ``scrapy crawl batch`` ends with exit code 2 and one readable
line naming the argument and the problem; nothing is stored. Other spiders
run exactly as with Scrapy's own command.
"""

from __future__ import annotations

import argparse
import sys

from scrapy.commands.crawl import Command as ScrapyCrawlCommand

from batchscraper.exceptions import BatchError, BatchInputError
from batchscraper.inputs import Limits, parse_batch
from batchscraper.reextract import reextract_spec
from batchscraper.store import store_for

INPUT_ARGS = ("urls", "schema", "prompt", "options")
EXIT_BAD_INPUT = 2


class Command(ScrapyCrawlCommand):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        """Runs before Scrapy sets up logging and the reactor, so an error stays one line."""
        super().process_options(args, opts)
        if args[:1] == ["batch"]:
            try:
                opts.spargs = self._checked_batch_args(opts.spargs)
            except BatchError as exc:
                sys.stderr.write(f"scrapy crawl batch: error: {exc}\n")
                sys.exit(EXIT_BAD_INPUT)

    def _checked_batch_args(self, spargs: dict[str, str]) -> dict[str, object]:
        """Parse the batch inputs (or check the batch id) and hand the spider the result."""
        settings = self.settings
        assert settings is not None
        if spargs.get("batch_id"):
            stray = sorted(set(spargs) & set(INPUT_ARGS))
            if stray:
                raise BatchInputError(f"batch_id: cannot be combined with {stray}")
            store_for(settings.get("MONGO_URI") or None).get_batch(spargs["batch_id"])
            return dict(spargs)
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
        spec = reextract_spec(store, source, limits=limits, **inputs, **option_args)
        return {"spec": spec, "reextract_from": source, **passthrough}
