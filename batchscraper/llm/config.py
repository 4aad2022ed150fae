"""LLM settings, read once into a frozen dataclass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from scrapy.settings import BaseSettings

RESPONSE_FORMATS = ("auto", "json_schema", "json_object", "text")
#: the key sent when a local server (Ollama, llama.cpp, vLLM) needs none
PLACEHOLDER_API_KEY = "not-needed"
TOKENS_PER_PRICE_UNIT = 1_000_000


@dataclass(frozen=True)
class LLMConfig:
    """Where the LLM is and how it is used (``OPENAI_*`` and ``BATCH_LLM_*`` settings)."""

    base_url: str
    api_key: str
    model: str
    enabled: bool = True
    client_path: str = "batchscraper.llm.client.OpenAIChatClient"
    concurrency: int = 4
    max_concurrency: int = 16
    timeout: float = 60.0
    item_deadline: float = 600.0
    retries: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    response_format: str = "auto"
    temperature: float = 0.0
    max_output_tokens: int = 4096
    chunk_tokens: int = 6000
    chunk_overlap: int = 200
    max_chunks: int = 40
    encoding: str = "cl100k_base"
    cache_enabled: bool = True
    cache_ttl_days: float = 30
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        """An endpoint is set (a base URL, or a key for the default OpenAI endpoint)."""
        return self.enabled and bool(self.base_url or self.api_key)

    def cost_usd(self, tokens_in: int, tokens_out: int) -> float:
        """What ``tokens_in`` + ``tokens_out`` cost with this model (0 when unpriced)."""
        price_in, price_out = self.prices.get(self.model, (0.0, 0.0))
        return (tokens_in * price_in + tokens_out * price_out) / TOKENS_PER_PRICE_UNIT

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> LLMConfig:
        response_format = settings.get("BATCH_LLM_RESPONSE_FORMAT", "auto")
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(
                f"BATCH_LLM_RESPONSE_FORMAT must be one of {RESPONSE_FORMATS}, "
                f"not {response_format!r}"
            )
        return cls(
            base_url=(settings.get("OPENAI_BASE_URL") or "").strip(),
            api_key=(settings.get("OPENAI_API_KEY") or "").strip(),
            model=settings.get("BATCH_LLM_MODEL") or "gpt-4o-mini",
            enabled=settings.getbool("BATCH_LLM_ENABLED", True),
            client_path=settings.get("BATCH_LLM_CLIENT") or cls.client_path,
            concurrency=max(1, settings.getint("BATCH_LLM_CONCURRENCY", 4)),
            max_concurrency=max(1, settings.getint("BATCH_LLM_MAX_CONCURRENCY", 16)),
            timeout=settings.getfloat("BATCH_LLM_TIMEOUT", 60.0),
            item_deadline=settings.getfloat("BATCH_LLM_ITEM_DEADLINE", 600.0),
            retries=max(0, settings.getint("BATCH_LLM_RETRIES", 3)),
            backoff_base=settings.getfloat("BATCH_LLM_RETRY_BACKOFF_BASE", 1.0),
            backoff_max=settings.getfloat("BATCH_LLM_RETRY_BACKOFF_MAX", 30.0),
            response_format=response_format,
            temperature=settings.getfloat("BATCH_LLM_TEMPERATURE", 0.0),
            max_output_tokens=settings.getint("BATCH_LLM_MAX_OUTPUT_TOKENS", 4096),
            chunk_tokens=settings.getint("BATCH_LLM_CHUNK_TOKENS", 6000),
            chunk_overlap=settings.getint("BATCH_LLM_CHUNK_OVERLAP", 200),
            max_chunks=max(1, settings.getint("BATCH_LLM_MAX_CHUNKS", 40)),
            encoding=settings.get("BATCH_LLM_ENCODING") or "cl100k_base",
            cache_enabled=settings.getbool("BATCH_LLM_CACHE_ENABLED", True),
            cache_ttl_days=settings.getfloat("BATCH_LLM_CACHE_TTL_DAYS", 30),
            prices=_prices(settings.getdict("BATCH_LLM_PRICES")),
        )


def _prices(raw: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, float]]:
    """``{"model": [in, out]}`` (``getdict`` has read JSON text from ``-s``) as floats."""
    prices = {}
    for model, pair in raw.items():
        price_in, price_out = pair
        prices[str(model)] = (float(price_in), float(price_out))
    return prices
