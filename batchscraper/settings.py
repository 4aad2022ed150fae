"""Scrapy settings for batchscraper.

Every ``BATCH_*`` setting has its default here and a line in the README.
Deployment-specific values come from the environment (MONGO_URI,
BATCHSCRAPER_HOME, OPENAI_*, BATCH_LLM_MODEL, BATCH_API_KEYS).
"""

import os

BOT_NAME = "batchscraper"
SPIDER_MODULES = ["batchscraper.spiders"]
NEWSPIDER_MODULE = "batchscraper.spiders"
COMMANDS_MODULE = "batchscraper.commands"

# -- safety: nothing listens (the telnet console and remote control are off in EXTENSIONS) --
ROBOTSTXT_OBEY = False

# -- engine --------------------------------------------------------------------------
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
TWISTED_DNS_RESOLVER = "batchscraper.downloadermiddlewares.ssrf.GuardedResolver"
# Scrapy starts CONCURRENT_ITEMS tasks per callback output; pages yield one item.
CONCURRENT_ITEMS = 4
CONCURRENT_REQUESTS = 8  # replaced per batch by its `concurrency` option
CONCURRENT_REQUESTS_PER_DOMAIN = 8
DOWNLOAD_TIMEOUT = 30  # replaced per request by `timeout_per_url`
DOWNLOAD_MAXSIZE = 10 * 1024 * 1024
DOWNLOAD_WARNSIZE = 0
REDIRECT_MAX_TIMES = 10
COOKIES_ENABLED = False
LOG_LEVEL = "INFO"
USER_AGENT = "batchscraper/0.1 (+https://github.com/batchscraper/batchscraper)"
FEED_EXPORT_ENCODING = "utf-8"

AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 8.0
DOWNLOAD_DELAY = 0

RETRY_ENABLED = True
RETRY_TIMES = 2  # replaced per batch by its `retries` option
RETRY_HTTP_CODES = [429, 500, 502, 503, 504, 522, 524, 408]
RETRY_EXCEPTIONS = [
    "scrapy.exceptions.CannotResolveHostError",
    "scrapy.exceptions.DownloadConnectionRefusedError",
    "scrapy.exceptions.DownloadFailedError",
    "scrapy.exceptions.DownloadTimeoutError",
    "scrapy.exceptions.ResponseDataLossError",
    "twisted.internet.error.ConnectionDone",
    "twisted.internet.error.ConnectError",
    "twisted.internet.error.ConnectionLost",
    "scrapy.core.downloader.handlers.http11.TunnelError",
    "playwright.async_api.Error",  # navigation failures, a crashed or restarted browser
]

# Scrapy's parts for crawls that follow links (allowed domains, depth, referers, URL
# length, HTTP auth) are off: a batch fetches the URLs it was given and their redirects,
# so each would only cost every page a pass for nothing
DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
    "scrapy.downloadermiddlewares.httpauth.HttpAuthMiddleware": None,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "batchscraper.downloadermiddlewares.ssrf.SsrfGuardMiddleware": 50,
    "batchscraper.downloadermiddlewares.retry.BackoffRetryMiddleware": 550,
}
SPIDER_MIDDLEWARES = {
    "scrapy.spidermiddlewares.referer.RefererMiddleware": None,
    "scrapy.spidermiddlewares.urllength.UrlLengthMiddleware": None,
    "scrapy.spidermiddlewares.depth.DepthMiddleware": None,
    "scrapy.spidermiddlewares.metacopy.MetaCopyDetectionMiddleware": None,
}
ITEM_PIPELINES = {
    "pipelines.extract.ExtractPipeline": 100,
    "pipelines.validate.ValidatePipeline": 200,
    "pipelines.escalate.EscalatePipeline": 250,
    "pipelines.store.StorePipeline": 300,
}
EXTENSIONS = {
    "batchscraper.extensions.progress.ProgressLog": 500,
    # nothing listens; and their modules (twisted.conch, aiohttp) are not even imported,
    # which saves every crawl ~0.15 s of CPU at start
    "scrapy.extensions.telnet.TelnetConsole": None,
    "scrapy.extensions.remote_control.RemoteControl": None,
}
# the final records as they reach feed exports (`-O results.jsonl`)
FEED_EXPORT_FIELDS = [
    "batch_id",
    "index",
    "url",
    "status",
    "data",
    "validation",
    "evidence",
    "error",
    "render_mode",
    "http_status",
    "final_url",
    "attempts",
    "duration_ms",
    "content",
    "render_reason",
    "screenshot",
    "pdf",
    "cache",
    "extraction",
    "filtered_out",
    "llm_calls",
    "llm_ms",
    "tokens",
    "cost_usd",
]

# -- batchscraper --------------------------------------------------------------------
# SSRF guard: only public addresses are fetched unless a network is allowed here
# (e.g. ["127.0.0.0/8"] for tests, ["10.0.0.0/8"] for an intranet deployment).
BATCH_SSRF_GUARD_ENABLED = True
BATCH_ALLOWED_NETWORKS: list[str] = []
BATCH_ALLOWED_PORTS: list[int] = []  # empty: any port
# the egress guard (a loopback proxy every Chromium connection, and every fetch through a
# SOCKS or https proxy, goes through): how it resolves names (import path of a function
# (host, port) -> addresses), and how long it waits for a connection to the address it
# checked (through a proxy: resolving, connecting and the proxy's handshake together)
BATCH_EGRESS_RESOLVER = "batchscraper.downloadermiddlewares.ssrf.resolve"
BATCH_EGRESS_CONNECT_TIMEOUT = 10.0
# the guard listens on a loopback port per proxy in use (its route): beyond this many, the
# least recently used ones no request in flight holds are closed
BATCH_EGRESS_MAX_ROUTES = 128

# Proxies (fetched and rendered pages). The batch option `proxy` (or a URL's own) comes first;
# else every request goes through the operator's BATCH_PROXIES (http://, https://, socks5://
# or socks5h:// URLs, with credentials if needed; trusted: they may be on private addresses;
# all but http:// ones, and every rendered page's, go through the egress guard, which chains
# to them). A domain keeps its proxy until it fails (connect error, 407 or a refused SOCKS5
# login, BATCH_PROXY_MAX_BANS answers in BATCH_PROXY_BAN_CODES in a row); a failed proxy is
# benched BATCH_PROXY_BENCH_SECONDS, doubled per failure in a row, at most
# BATCH_PROXY_BENCH_MAX_SECONDS, and the request goes through another (PROXY_FAILED when
# none is left).
BATCH_PROXY_ENABLED = True
BATCH_PROXIES: list[str] = []
BATCH_PROXY_BENCH_SECONDS = 30.0
BATCH_PROXY_BENCH_MAX_SECONDS = 600.0
BATCH_PROXY_BAN_CODES = [403, 429]
BATCH_PROXY_MAX_BANS = 3

# PDF pages (render_mode "pdf"): pages read, body size, and how long reading may take;
# an encrypted or broken PDF, or one read too slowly, is PDF_UNREADABLE.
BATCH_PDF_MAX_PAGES = 200
BATCH_PDF_MAX_BYTES = 10 * 1024 * 1024
BATCH_PDF_TIMEOUT = 20.0

# The fetch cache (option `max_age`): pages a batch fetched with max_age > 0 are kept per
# owner (page_cache collection, bodies in GridFS) for BATCH_CACHE_TTL_DAYS; larger bodies than
# BATCH_CACHE_MAX_BYTES are not kept. Only requests with max_age > 0 use it.
BATCH_CACHE_ENABLED = True
BATCH_CACHE_MAX_BYTES = 5 * 1024 * 1024
BATCH_CACHE_TTL_DAYS = 7.0
HTTPCACHE_ENABLED = True  # read by PageCacheMiddleware (Scrapy's own is replaced below)
HTTPCACHE_POLICY = "batchscraper.downloadermiddlewares.pagecache.MaxAgePolicy"
HTTPCACHE_STORAGE = "batchscraper.downloadermiddlewares.pagecache.MongoCacheStorage"

# Limits on what one batch may ask for.
BATCH_MAX_URLS = 10_000
BATCH_MAX_TOTAL_ITEMS = 5_000
BATCH_MAX_SCHEMA_BYTES = 65_536
BATCH_MAX_SCHEMA_DEPTH = 32
BATCH_RETENTION_DAYS = 0  # batches (items, content, screenshots) expire after this long; 0: kept
BATCH_RETENTION_SWEEP_INTERVAL = 3600.0  # seconds between the Scrapyd sweeps of expired data
BATCH_VALIDATION_TIMEOUT = 5.0  # seconds validating one item may take (VALIDATION_TIMEOUT)
BATCH_FREE_FORM_MAX_BYTES = 65_536  # JSON size of a record without a schema (VALIDATION_FAILED)

# How a spider works its share of a batch.
BATCH_CLAIM_CHUNK = 64  # items leased per round trip to MongoDB
BATCH_LEASE_SECONDS = 120.0  # a dead worker's items are reclaimed after this
BATCH_CANCEL_CHECK_INTERVAL = 2.0  # seconds between checks of the batch's cancel flag
BATCH_RETRY_BACKOFF_BASE = 0.5  # seconds; doubled per attempt
BATCH_RETRY_BACKOFF_MAX = 30.0  # seconds; also caps a server's Retry-After
BATCH_STORE_FLUSH_ITEMS = 64  # item records written per transaction, at most...
BATCH_STORE_FLUSH_SECONDS = 0.05  # ...or after this long
BATCH_PROGRESS_INTERVAL = 5.0  # seconds between progress lines on the console
# `scrapy crawl batch` exits 1 unless the batch completed (False: Scrapy's usual 0)
BATCH_CRAWL_EXIT_BY_STATUS = True

# Headless Chromium (scrapy-playwright) for pages that need JavaScript.
BATCH_BROWSER_ENABLED = True
BATCH_CHROMIUM_PATH = ""  # empty: `chromium` on PATH, else /usr/bin/chromium
BATCH_BROWSER_MAX_PAGES = 4  # pages rendering at once (tabs); more gains nothing on 2 cores
BATCH_BROWSER_BLOCKED_RESOURCES = ["image", "media", "font"]  # resource types not loaded
BATCH_BROWSER_SETTLE_MS = 50  # after load, wait until the DOM is quiet this long...
BATCH_BROWSER_SETTLE_MAX_MS = 2_000  # ...but no longer than this
BATCH_BROWSER_RESTART_PAGES = 500  # the browser is relaunched after this many pages (0: never)
BATCH_APP_SHELL_MAX_TEXT = 400  # visible characters below which a page may be an app shell

# -- HTTP API and webhooks (Scrapyd services in batchscraper/api) --------------
# In the Scrapyd process these can also be set in scrapyd.conf's [batchscraper] section.
# API keys: "key:owner" pairs separated by commas (several keys may share an owner);
# "key:owner:admin" is an admin key: it sees and manages every owner's batches and schedules.
# Empty: the API is open and Scrapyd must bind to a loopback address.
BATCH_API_KEYS = os.environ.get("BATCH_API_KEYS", "")
# Batches and schedules stored without an owner (by `scrapy crawl`, or before API keys were
# turned on) belong to this owner (one of BATCH_API_KEYS'); empty: only admin keys see them.
BATCH_API_DEFAULT_OWNER = os.environ.get("BATCH_API_DEFAULT_OWNER", "")
BATCH_API_PROJECT = "batchscraper"  # Scrapyd project whose `batch` spider runs API batches
# Scrapy settings given to every job the API schedules (-s NAME=VALUE), e.g.
# {"BATCH_ALLOWED_NETWORKS": "10.0.0.0/8"}; in scrapyd.conf write it as JSON.
BATCH_API_JOB_SETTINGS: dict[str, str] = {}
BATCH_API_MAX_BODY_BYTES = 10 * 1024 * 1024  # larger POST /batches bodies get 413
# A request body refused from its headers (no key, no basic auth, over the limit) is never
# stored; what the client still sends is read and dropped for at most this long, so it can
# read the answer, then the connection is closed.
BATCH_API_LINGER_SECONDS = 2.0
BATCH_API_PAGE_SIZE = 20  # default `limit` of batch and item pages
BATCH_API_MAX_BATCHES_LIMIT = 50  # largest `limit` of GET /batches
BATCH_API_MAX_ITEMS_LIMIT = 500  # largest `limit` of item pages
BATCH_API_STREAM_CHUNK = 200  # items read per MongoDB round trip when streaming NDJSON
BATCH_API_CHANGES_OVERLAP = 2.0  # seconds an answer's `as_of` (updated_after cursor) reaches back
BATCH_API_IDEMPOTENCY_TTL = 86_400  # seconds an Idempotency-Key is remembered
BATCH_SYNC_MAX_URLS = 50  # POST /batches?wait=SECONDS: at most this many URLs (more: 413 TOO_LARGE)
BATCH_SYNC_MAX_WAIT = 60  # the largest wait= (seconds)
BATCH_SYNC_POLL_INTERVAL = 0.25  # seconds between status reads of a waiting submit
# On SIGTERM (or Ctrl-C) Scrapyd stops its crawls gracefully (their unfinished items go back
# to pending) and waits this long for them before it kills them and exits.
BATCH_API_SHUTDOWN_GRACE_SECONDS = 30.0
BATCH_WEBHOOK_POLL_INTERVAL = 1.0  # seconds between scans of the webhook outbox
BATCH_WEBHOOK_TIMEOUT = 10.0  # seconds one delivery attempt may take
BATCH_WEBHOOK_MAX_ATTEMPTS = 12  # then the event is marked failed
BATCH_WEBHOOK_RETRY_BASE = 5.0  # seconds before the first retry, doubled per attempt
BATCH_WEBHOOK_RETRY_MAX = 3600.0  # longest wait between two attempts (s)
BATCH_WEBHOOK_HISTORY = 20  # delivery attempts kept on the batch document
BATCH_WEBHOOK_MAX_ANSWER_BYTES = 64 * 1024  # a receiver's answer is read this far, then dropped

# -- reliability ---------------------------------------------------------------------
# An item record larger than this (BSON bytes) gets its `content` cut, then its data dropped
# (CONTENT_TOO_LARGE): MongoDB refuses documents over 16 MiB.
BATCH_MAX_RECORD_BYTES = 15 * 1024 * 1024
# Store writes that fail because MongoDB is unreachable (restarting, failing over) are
# retried this many times, waiting BATCH_STORE_RETRY_BACKOFF seconds, doubled per attempt.
BATCH_STORE_RETRIES = 5
BATCH_STORE_RETRY_BACKOFF = 0.5
# The reconciler in the Scrapyd process: batches submitted through the API that are pending
# or running with no Scrapyd job and no live lease for BATCH_RECONCILE_GRACE seconds get a
# resume job, at most BATCH_RECONCILE_MAX_RESUMES times; then their unfinished items fail
# with WORKER_LOST. A batch whose items are all finished is given its final status.
BATCH_RECONCILE_ENABLED = True
BATCH_RECONCILE_INTERVAL = 30.0  # seconds between scans
BATCH_RECONCILE_GRACE = 60.0  # seconds a batch must look abandoned before it is touched
BATCH_RECONCILE_MAX_RESUMES = 5
# Schedules (POST /schedules) fire inside the Scrapyd process that serves the API: every
# BATCH_SCHEDULE_INTERVAL seconds the due ticks become batches. With catch_up "none" a tick
# found more than BATCH_SCHEDULE_MISFIRE_GRACE seconds late (the service was down) is dropped.
BATCH_SCHEDULE_ENABLED = True
BATCH_SCHEDULE_INTERVAL = 5.0  # seconds between scans for due ticks
BATCH_SCHEDULE_MISFIRE_GRACE = 60.0
BATCH_SCHEDULE_SECONDS_FIELD = False  # accept 6-field cron lines (seconds first): for tests

# MongoDB: empty means the embedded server under BATCHSCRAPER_HOME.
MONGO_URI = os.environ.get("MONGO_URI", "")

# -- LLM extraction ------------------------------------------------------------------
# The endpoint: any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp).
# With neither OPENAI_BASE_URL nor OPENAI_API_KEY set, no LLM is used.
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "")  # empty: api.openai.com when a key is set
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")  # local servers need none
BATCH_LLM_MODEL = os.environ.get("BATCH_LLM_MODEL", "gpt-4o-mini")  # model name sent to the server
BATCH_LLM_ENABLED = True  # False: structured data only, even when an endpoint is configured
BATCH_HEURISTICS_ENABLED = True  # False: no page heuristics (structured data, then the LLM)
BATCH_LLM_CLIENT = "batchscraper.llm.client.OpenAIChatClient"  # import path of the ChatClient
BATCH_LLM_CONCURRENCY = 4  # LLM requests in flight per process at the start; adapted (AIMD)
BATCH_LLM_MAX_CONCURRENCY = 16  # the most the adaptive limit grows to
BATCH_LLM_TIMEOUT = 60.0  # seconds for one answer (x n+1 when n requests are ahead; x2 per timeout)
BATCH_LLM_ITEM_DEADLINE = 600.0  # seconds for all LLM attempts of one item together
BATCH_LLM_RETRIES = 3  # retries of 429, 5xx, timeouts and connection errors
BATCH_LLM_RETRY_BACKOFF_BASE = 1.0  # seconds; doubled per attempt
BATCH_LLM_RETRY_BACKOFF_MAX = 30.0  # seconds; also caps the server's Retry-After
# auto (json_schema, falling back), json_schema, json_object, text
BATCH_LLM_RESPONSE_FORMAT = "auto"
BATCH_LLM_TEMPERATURE = 0.0  # sampling temperature of extraction requests
BATCH_LLM_MAX_OUTPUT_TOKENS = 4096  # the most max_tokens of one answer (the schema sets less)
BATCH_LLM_CHUNK_TOKENS = 6000  # page tokens per request; longer pages are chunked
BATCH_LLM_CHUNK_OVERLAP = 200  # tokens repeated between neighbouring chunks
BATCH_LLM_MAX_CHUNKS = 40  # chunks of one page; more fails the item with PAGE_TOO_LONG
BATCH_LLM_ENCODING = "cl100k_base"  # tokenizer used to count and chunk (bpe-openai)
BATCH_LLM_CACHE_ENABLED = True  # llm_cache collection: identical requests are answered from it
BATCH_LLM_CACHE_TTL_DAYS = 30  # cached answers expire after this many days (0: never)
# USD per million tokens, [input, output], by model; unknown models cost 0 (local servers).
BATCH_LLM_PRICES = {
    "gpt-4o-mini": [0.15, 0.60],
    "gpt-4o": [2.50, 10.00],
    "gpt-4.1": [2.00, 8.00],
    "gpt-4.1-mini": [0.40, 1.60],
    "gpt-4.1-nano": [0.10, 0.40],
}

# Learned templates (batchscraper/templates): the LLM answers a site template's first pages,
# selectors are learned from them and extract the template's other pages without an LLM.
# The batch option `templates` (auto, off, only) chooses per batch; this switches them off.
BATCH_TEMPLATES_ENABLED = True
BATCH_TEMPLATE_SAMPLES = 3  # LLM-answered pages a template is learned from
BATCH_TEMPLATE_VERIFY_PAGES = 2  # further LLM-answered pages a candidate must reproduce
BATCH_TEMPLATE_MAX_ATTEMPTS = 3  # candidates refuted before learning a shape gives up
BATCH_TEMPLATE_SIMILARITY = 0.75  # page-shape Jaccard similarity of pages of one template
BATCH_TEMPLATE_AGREEMENT = 0.95  # share of fields a template must reproduce (required: all)
# A template's pages are audited (also asked from the LLM and compared): the gap between audits
# is AUDIT_EVERY pages after a bad outcome (a miss, a disagreement), doubled by each agreeing
# comparison in a row (its held-out pages included), at most AUDIT_MAX_EVERY (0: no audits)
BATCH_TEMPLATE_AUDIT_EVERY = 100
BATCH_TEMPLATE_AUDIT_MAX_EVERY = 1000
BATCH_TEMPLATE_WINDOW = 10  # recent misses and audits judged for retirement
BATCH_TEMPLATE_RETIRE_SHARE = 0.3  # more bad ones than this share of the window retires it
BATCH_TEMPLATE_RETIRE_MIN = 3  # ... when at least this many are bad
BATCH_TEMPLATE_SAMPLE_MAX_BYTES = 500_000  # larger pages are not kept as samples
BATCH_TEMPLATE_LEASE_SECONDS = 60.0  # a worker's hold on learning one template (and its pages)
# While a template is learned or verified, only the pages its learning needs go to the LLM;
# the shape's other pages wait for the outcome, at most this long (then the LLM answers them)
BATCH_TEMPLATE_HOLD_SECONDS = 300.0
# ... and while the waiting pages' bodies stay under this (Scrapy stops downloading for every
# host when its scraper slot holds SCRAPER_SLOT_MAX_ACTIVE_SIZE, 5 MB): later ones go to the LLM
BATCH_TEMPLATE_HOLD_MAX_BYTES = 2_500_000
# how often a worker reads templates again: a host's active ones when matching, and the
# state of one being learned while pages wait (and how often it saves its hit counts)
BATCH_TEMPLATE_POLL_SECONDS = 0.5

# -- performance and scale-out -------------------------------------------------------
# Scrapyd nodes the API schedules a batch's jobs onto, dealt round-robin: "local" (this
# Scrapyd) and/or base URLs of other Scrapyd nodes sharing this MongoDB, with their basic
# auth in the URL ("http://user:password@10.0.0.3:6800"). Empty: this Scrapyd only.
# In scrapyd.conf: a JSON list or comma-separated.
BATCH_API_NODES: list[str] = []
BATCH_API_NODE_TIMEOUT = 10.0  # seconds for one call to another node's JSON API
BATCH_API_NODE_POLL_INTERVAL = 5.0  # seconds between listjobs.json polls of the other nodes

# Politeness. Per domain: CONCURRENT_REQUESTS_PER_DOMAIN (capped by the batch's `concurrency`),
# DOWNLOAD_DELAY, and DOWNLOAD_SLOTS for chosen hosts ({"host": {"concurrency": 2, "delay": 1}});
# AutoThrottle (above) adapts each domain's delay to its latency. robots.txt: the batch option
# `robots_txt`, or ROBOTSTXT_OBEY for every batch; disallowed URLs fail with ROBOTS_DISALLOWED.
DOWNLOADER_MIDDLEWARES.update(
    {
        "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
        "batchscraper.downloadermiddlewares.robots.RobotsTxtPolicy": 100,
        # between retry (550) and the downloader: sees every attempt's raw status
        "batchscraper.downloadermiddlewares.breaker.CircuitBreakerMiddleware": 580,
        # just before Scrapy's HttpProxyMiddleware (750), which sends the proxy's credentials
        "batchscraper.downloadermiddlewares.proxies.ProxyRotationMiddleware": 740,
        # the fetch cache (option max_age): Scrapy's HttpCacheMiddleware on MongoDB/GridFS
        "scrapy.downloadermiddlewares.httpcache.HttpCacheMiddleware": None,
        "batchscraper.downloadermiddlewares.pagecache.PageCacheMiddleware": 900,
    }
)
EXTENSIONS.update({"batchscraper.extensions.domains.DomainHealthWriter": 510})
# In flight: a leased item becomes `running` when its request reaches the downloader (the
# batch's `leased` counter holds the ones still queued in the worker); written every
# BATCH_INFLIGHT_FLUSH_SECONDS. Off: items stay `leased` until they finish.
BATCH_INFLIGHT_ENABLED = True
BATCH_INFLIGHT_FLUSH_SECONDS = 0.5
EXTENSIONS.update({"batchscraper.extensions.inflight.InFlightMarker": 520})
# Circuit breaker: over a domain's last BATCH_BREAKER_WINDOW answers (once it has at least
# BATCH_BREAKER_MIN_REQUESTS), an error share of BATCH_BREAKER_ERROR_RATE or more is a strike:
# the domain's delay goes up (BATCH_BREAKER_DELAY, doubled per strike, at most _MAX_DELAY); at
# BATCH_BREAKER_STRIKES strikes its remaining items fail with DOMAIN_CIRCUIT_OPEN (retryable).
BATCH_BREAKER_ENABLED = True
BATCH_BREAKER_HTTP_CODES = [408, 429, 500, 502, 503, 504, 522, 524]  # plus download errors
BATCH_BREAKER_WINDOW = 20
BATCH_BREAKER_MIN_REQUESTS = 10
BATCH_BREAKER_ERROR_RATE = 0.5
BATCH_BREAKER_DELAY = 1.0  # seconds, the delay at the first strike
BATCH_BREAKER_MAX_DELAY = 30.0
BATCH_BREAKER_STRIKES = 3
BATCH_BREAKER_MAX_DOMAINS = 10_000  # domains remembered per process (least recently seen go)
# Per-domain health (requests, errors, delay, breaker) on the batch document's `domains`.
BATCH_DOMAIN_HEALTH_INTERVAL = 5.0  # seconds between writes (0: off)
BATCH_DOMAIN_HEALTH_TOP = 20  # domains kept, the busiest first
