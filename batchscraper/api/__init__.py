"""The batch HTTP API, mounted in Scrapyd through ``scrapyd.conf``.

``[services]`` mounts :class:`~batchscraper.api.resources.Batches` at
``/batches`` and :class:`~batchscraper.api.resources.OpenApi` at
``/openapi.json``; ``application = batchscraper.api.app.application`` puts
them in front of Scrapyd's basic auth (they authenticate with API keys).
The resources talk to MongoDB through :mod:`batchscraper.store` (off the
reactor thread) and to Scrapyd's scheduler, poller and launcher; they import
nothing from the spiders.
"""
