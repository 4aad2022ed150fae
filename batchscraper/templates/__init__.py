"""Learned templates: pages of one site template extracted by learned selectors, not the LLM.

:mod:`.signature` (page shape, key parts), :mod:`.selectors` (learning and
applying rules), :mod:`.store` (the ``templates`` collection), :mod:`.step`
(what the extract pipeline calls: matching, serving, holding pages back with
:mod:`.holds`), :mod:`.learning` (what the LLM's answers do), :mod:`.settings`;
for the API and the command line, :mod:`.service` (owner-scoped reads and
deletes), :mod:`.openapi` and :mod:`.cli` (``batchscraper templates``).
"""
