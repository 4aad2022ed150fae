"""The template settings, read once per crawl."""

from __future__ import annotations

from dataclasses import dataclass

from scrapy.settings import BaseSettings

#: doublings of the audit gap counted at most (the gap is capped long before)
MAX_DOUBLINGS = 32


@dataclass(frozen=True)
class TemplateSettings:
    """``BATCH_TEMPLATE*`` settings (see the README's templates section)."""

    enabled: bool = True
    samples: int = 3
    verify_pages: int = 2
    max_attempts: int = 3
    similarity: float = 0.75
    agreement: float = 0.95
    audit_every: int = 100
    audit_max_every: int = 1000
    window: int = 10
    retire_share: float = 0.3
    retire_min: int = 3
    sample_max_bytes: int = 500_000
    lease_seconds: float = 60.0
    hold_seconds: float = 300.0
    hold_max_bytes: int = 2_500_000
    poll_seconds: float = 0.5

    def samples_needed(self, attempts: int) -> int:
        """Samples a learning round needs: one more for each earlier candidate that failed."""
        return min(self.samples + attempts, self.samples_kept)

    def audit_gap(self, streak: int) -> int:
        """Pages between a template's audits after ``streak`` agreeing comparisons with the
        LLM in a row: ``audit_every`` doubled by each, at most ``audit_max_every`` (0: none)."""
        if not self.audit_every:
            return 0
        doubled = self.audit_every * 2 ** min(max(streak, 0), MAX_DOUBLINGS)
        return min(doubled, max(self.audit_max_every, self.audit_every))

    @property
    def samples_kept(self) -> int:
        """Samples a template keeps: the first ones and those of refuted candidates."""
        return self.samples + self.max_attempts

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> TemplateSettings:
        return cls(
            enabled=settings.getbool("BATCH_TEMPLATES_ENABLED"),
            samples=settings.getint("BATCH_TEMPLATE_SAMPLES"),
            verify_pages=settings.getint("BATCH_TEMPLATE_VERIFY_PAGES"),
            max_attempts=settings.getint("BATCH_TEMPLATE_MAX_ATTEMPTS"),
            similarity=settings.getfloat("BATCH_TEMPLATE_SIMILARITY"),
            agreement=settings.getfloat("BATCH_TEMPLATE_AGREEMENT"),
            audit_every=settings.getint("BATCH_TEMPLATE_AUDIT_EVERY"),
            audit_max_every=settings.getint("BATCH_TEMPLATE_AUDIT_MAX_EVERY"),
            window=settings.getint("BATCH_TEMPLATE_WINDOW"),
            retire_share=settings.getfloat("BATCH_TEMPLATE_RETIRE_SHARE"),
            retire_min=settings.getint("BATCH_TEMPLATE_RETIRE_MIN"),
            sample_max_bytes=settings.getint("BATCH_TEMPLATE_SAMPLE_MAX_BYTES"),
            lease_seconds=settings.getfloat("BATCH_TEMPLATE_LEASE_SECONDS"),
            hold_seconds=settings.getfloat("BATCH_TEMPLATE_HOLD_SECONDS"),
            hold_max_bytes=settings.getint("BATCH_TEMPLATE_HOLD_MAX_BYTES"),
            poll_seconds=settings.getfloat("BATCH_TEMPLATE_POLL_SECONDS"),
        )
