"""The public error hierarchy.

Every error a user can see — on the CLI, in an HTTP response, or in an item
record's ``error`` field — is one of these classes. Each carries a stable
``code``, whether retrying can help (``retryable``) and, for input errors,
the HTTP status the API answers with.
"""

from __future__ import annotations

from typing import TypedDict, Unpack

from scrapy.exceptions import IgnoreRequest


class ErrorInfo(TypedDict):
    """The ``error`` object of an item record or a batch: what :meth:`BatchError.to_dict` gives."""

    code: str
    message: str
    retryable: bool


class BatchError(Exception):
    """Base class: a stable error ``code`` plus a human-readable message."""

    code = "INTERNAL_ERROR"
    retryable = False
    http_status = 500

    def __init__(self, message: str, *, details: object = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code

    def to_dict(self) -> ErrorInfo:
        """The ``error`` object stored on an item record."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


# -- input errors: nothing is stored when one of these is raised ------------


class BatchInputError(BatchError):
    """Malformed input (bad JSON, unreadable @file, wrong shape)."""

    code = "INVALID_INPUT"
    http_status = 400


def every_problem(errors: list[BatchInputError]) -> BatchInputError:
    """One error for several refusals of one request: the first one's code and status, every
    message, and ``details`` listing every problem (each with its own code)."""
    if len(errors) == 1:
        return errors[0]
    details: list[object] = []
    for error in errors:
        if isinstance(error.details, list):
            details += error.details
        else:
            details.append({"code": error.code, "message": error.message})
    return type(errors[0])("; ".join(error.message for error in errors), details=details)


class LLMRequiredError(BatchInputError):
    """Well-formed input this deployment cannot serve: a prompt without a schema needs an LLM
    endpoint, and none is configured (HTTP 422, code ``INVALID_INPUT``)."""

    http_status = 422


class InvalidURLsError(BatchInputError):
    """One or more URLs are unusable; ``details`` lists them by index."""

    code = "INVALID_URL"
    http_status = 422


class InvalidSchemaError(BatchInputError):
    """The schema is not a usable JSON Schema or field list."""

    code = "INVALID_SCHEMA"
    http_status = 422


class InvalidOptionError(BatchInputError):
    """An option is unknown or out of its range."""

    code = "INVALID_OPTION"
    http_status = 422


class InvalidWebhookError(InvalidOptionError):
    code = "INVALID_WEBHOOK"


class TooLargeError(BatchInputError):
    """The batch exceeds a size limit (URL count, body size)."""

    code = "TOO_LARGE"
    http_status = 413


class UnsupportedMediaTypeError(BatchInputError):
    """A request body that says it is not JSON (HTTP 415)."""

    code = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415


class BatchNotFoundError(BatchError):
    """No batch with that id."""

    code = "NOT_FOUND"
    http_status = 404


class BatchStateError(BatchError):
    """The batch is in a state that does not allow the operation."""

    code = "INVALID_STATE"
    http_status = 409


class NothingToRetryError(BatchStateError):
    code = "NOTHING_TO_RETRY"


class IdempotencyConflictError(BatchStateError):
    """The Idempotency-Key was already used with a different request body."""

    code = "IDEMPOTENCY_CONFLICT"


class IdempotencyInProgressError(BatchStateError):
    """A request with this Idempotency-Key is still being processed."""

    code = "IDEMPOTENCY_IN_PROGRESS"


# -- per-item errors: stored on the item record -----------------------------


class ItemError(BatchError):
    """An error that ends one item (one URL)."""

    code = "ITEM_ERROR"


class FetchError(ItemError):
    """The page could not be fetched. ``code`` says why."""

    code = "CONNECTION_FAILED"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        if retryable is not None:
            self.retryable = retryable
        self.status = http_status


class FetchBlockedError(FetchError, IgnoreRequest):
    """The URL, a redirect hop or a request of the rendered page points somewhere
    batchscraper must not connect to (the address policy). An ``IgnoreRequest``,
    so Scrapy drops the request where the check refuses it."""

    code = "FETCH_BLOCKED"
    retryable = False


class ConnectionFailedError(FetchError):
    code = "CONNECTION_FAILED"
    retryable = True


class DNSError(FetchError):
    code = "DNS_ERROR"
    retryable = True


class FetchTimeoutError(FetchError):
    code = "TIMEOUT"
    retryable = True


class ContentTooLargeError(FetchError):
    """The page (or the record made from it) is over its size limit."""

    code = "CONTENT_TOO_LARGE"
    retryable = False


class BadContentEncodingError(FetchError):
    """The body does not decode with its Content-Encoding."""

    code = "BAD_CONTENT_ENCODING"
    retryable = False


class HttpStatusError(FetchError):
    """An HTTP error status; retryable for the statuses a retry can help."""

    code = "HTTP_ERROR"


class TooManyRedirectsError(FetchError):
    code = "TOO_MANY_REDIRECTS"
    retryable = False


class UnsupportedContentTypeError(FetchError):
    code = "UNSUPPORTED_CONTENT_TYPE"
    retryable = False


class PdfUnreadableError(FetchError):
    """A PDF page that is encrypted, broken, or takes longer than ``BATCH_PDF_TIMEOUT``."""

    code = "PDF_UNREADABLE"
    retryable = False


class RenderFailedError(FetchError):
    """The browser itself failed (not the page's network)."""

    code = "RENDER_FAILED"
    retryable = True


class ProxyFailedError(FetchError):
    """Every proxy the request could use failed (connect error, 407, repeated bans) and is
    benched for now."""

    code = "PROXY_FAILED"
    retryable = True


class RobotsDisallowedError(FetchError):
    code = "ROBOTS_DISALLOWED"
    retryable = False


class DomainCircuitOpenError(FetchError):
    """The domain answered mostly errors; its circuit breaker refuses requests for now."""

    code = "DOMAIN_CIRCUIT_OPEN"
    retryable = True


class NoStoredContentError(FetchError):
    """Re-extraction: the source batch kept no content for this URL."""

    code = "NO_STORED_CONTENT"
    retryable = False


class StoreFailedError(ItemError):
    """MongoDB refused the item's record."""

    code = "STORE_FAILED"


class WorkerLostError(ItemError):
    """The batch's workers died too often without finishing the item."""

    code = "WORKER_LOST"
    retryable = True


class ExtractionError(ItemError):
    """Nothing matching the schema could be extracted from the page."""

    code = "EXTRACTION_FAILED"


class EmptyExtractionError(ExtractionError):
    """Every extracted field was empty."""

    code = "EMPTY_EXTRACTION"


class ValidationFailedError(ItemError):
    """The record does not validate against the batch schema."""

    code = "VALIDATION_FAILED"


class ValidationTimeoutError(ValidationFailedError):
    """Validating the record took longer than ``BATCH_VALIDATION_TIMEOUT``.

    Not retryable: the same schema and page take as long again.
    """

    code = "VALIDATION_TIMEOUT"


class CancelledError(ItemError):
    """The batch was cancelled before this item finished."""

    code = "CANCELLED"
    retryable = True


class FailFastError(BatchError):
    """The batch (``fail_fast``) stopped at its first failed URL."""

    code = "FAIL_FAST"


# -- LLM extraction errors: stored on the item record ------------------------


class BudgetExceededError(ItemError):
    """The batch's ``max_llm_calls`` or ``max_cost_usd`` is spent; no more LLM calls."""

    code = "BUDGET_EXCEEDED"


class LLMErrorOptions(TypedDict, total=False):
    """The keyword arguments of :class:`LLMError` (its subclasses pass them on)."""

    code: str | None
    retryable: bool
    retry_after: float | None
    spent: bool
    saturated: bool


class LLMError(ItemError):
    """The LLM endpoint failed; ``code`` says how (after retries, where retrying helps).

    Raised by the chat client for one attempt, with what the retry decision
    needs: ``retry_after`` (seconds the endpoint asked for), ``spent`` (the
    server may have done the work: the attempt counts as a call) and
    ``saturated`` (a sign the endpoint has more requests than it can serve).
    """

    code = "LLM_ERROR"

    def __init__(
        self, message: str, *, code: str | None = None, retryable: bool = True,
        retry_after: float | None = None, spent: bool = True, saturated: bool = False,
    ) -> None:
        super().__init__(message, code=code)
        self.retryable = retryable
        self.retry_after = retry_after
        self.spent = spent
        self.saturated = saturated


class LLMRateLimitedError(LLMError):
    """The endpoint kept answering 429 after every retry."""

    code = "LLM_RATE_LIMITED"

    def __init__(self, message: str, **kwargs: Unpack[LLMErrorOptions]) -> None:
        options: LLMErrorOptions = {"saturated": True, **kwargs}
        super().__init__(message, **options)


class LLMTimeoutError(LLMError):
    """The endpoint did not answer within ``BATCH_LLM_TIMEOUT`` after every retry."""

    code = "LLM_TIMEOUT"

    def __init__(self, message: str, **kwargs: Unpack[LLMErrorOptions]) -> None:
        options: LLMErrorOptions = {"saturated": True, **kwargs}
        super().__init__(message, **options)


class LLMOutputTruncatedError(LLMError):
    """The answer hit its token cap (``finish_reason: length``), also with a larger cap."""

    code = "LLM_OUTPUT_TRUNCATED"


class LLMBadOutputError(LLMError):
    """The model's answer was not a JSON object, even after the repair re-prompt."""

    code = "LLM_BAD_OUTPUT"


class TemplateMissError(ExtractionError):
    """``templates: only``: no learned template of the page's site extracts this page.

    Retryable: a template for the page's shape may be learned by then.
    """

    code = "TEMPLATE_MISS"
    retryable = True


class ItemLimitError(ItemError):
    """The batch already holds ``max_total_items`` records."""

    code = "ITEM_LIMIT_REACHED"


# -- HTTP API errors ----------------------------------------------------------


class AuthenticationError(BatchError):
    """No API key, or one that is not configured (HTTP 401)."""

    code = "UNAUTHORIZED"
    http_status = 401


class ForbiddenError(BatchError):
    """The batch belongs to another API key's owner (HTTP 403)."""

    code = "FORBIDDEN"
    http_status = 403


class AdminRequiredError(ForbiddenError):
    """Only an admin key may do this, such as list another owner's batches (HTTP 403)."""

    code = "ADMIN_REQUIRED"


class MethodNotAllowedError(BatchError):
    """The path exists but does not answer this HTTP method (HTTP 405)."""

    code = "METHOD_NOT_ALLOWED"
    http_status = 405


class ServiceUnavailableError(BatchError):
    """The job runner cannot take the batch now (HTTP 503); nothing was stored."""

    code = "SERVICE_UNAVAILABLE"
    http_status = 503
    retryable = True


class WebhookVerificationError(BatchError):
    """A webhook's signature or timestamp does not verify."""

    code = "INVALID_SIGNATURE"
    http_status = 400


class PageTooLongError(ExtractionError):
    """The page needs more than ``BATCH_LLM_MAX_CHUNKS`` LLM requests."""

    code = "PAGE_TOO_LONG"


class JobNotScheduledError(ServiceUnavailableError):
    """The batch is stored but Scrapyd could not queue its job (HTTP 503); the reconciler will."""

    code = "JOB_NOT_SCHEDULED"


class InvalidScheduleError(BatchInputError):
    """A schedule's cron line, time zone, policies or batch template are unusable (HTTP 422);
    ``details`` lists every problem with its ``field`` and ``code``."""

    code = "INVALID_SCHEDULE"
    http_status = 422


class InvalidCompareError(BatchInputError):
    """``compare_to`` names no batch of the same schema, or ``ignore_fields`` names no schema
    field (HTTP 422); ``details`` lists every problem with its ``field`` and ``code``."""

    code = "INVALID_COMPARE"
    http_status = 422


class InvalidMonitorsError(BatchInputError):
    """``monitors`` holds an unknown rule, a ratio outside 0-1, or a field outside the schema
    (HTTP 422); ``details`` lists every problem with its ``field`` and ``code``."""

    code = "INVALID_MONITORS"
    http_status = 422
