"""Prompt size on the corpus: tokens sent to the LLM vs the raw HTML's tokens (target <= 15%).

For every page of ../shared/corpus/dev: the raw HTML's cl100k tokens (the
baseline: what sending the page as is would cost), and the tokens of the
full first request the extract pipeline would make for it — system
instructions, the schema written into the prompt (the costlier fallback
form), the task and the page's compact markdown, summed over chunks when
the page is chunked. Prints the median ratio, conversion time, and a JSON line.

    .venv/bin/python bench/prompt_size.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
sys.path.insert(0, str(REPO))

from w3lib.encoding import html_to_unicode  # noqa: E402

from batchscraper.extraction.content import prepare_page  # noqa: E402
from batchscraper.llm.prompts import SYSTEM_PROMPT, PromptParts, user_message  # noqa: E402
from batchscraper.llm.tokens import chunk_text, count_tokens  # noqa: E402
from pipelines.structured import wants_links  # noqa: E402

TARGET = 0.15
CHUNK_TOKENS = 6000
CHUNK_OVERLAP = 200


def main() -> int:
    rows = []
    for folder in sorted((CORPUS / "dev").iterdir()):
        if not folder.is_dir():
            continue
        html = html_to_unicode(None, (folder / "page.html").read_bytes())[1]
        schema = json.loads((folder / "schema.json").read_text())
        started = time.perf_counter()
        page = prepare_page(html, "https://example.com/", wants_links(schema))
        convert_ms = (time.perf_counter() - started) * 1000
        chunks = chunk_text(page.markdown, CHUNK_TOKENS, CHUNK_OVERLAP)
        prompt = sum(
            count_tokens(SYSTEM_PROMPT) + count_tokens(user_message(PromptParts(
                schema=schema, prompt=None, page=chunk, url="https://example.com/",
                part=(n, len(chunks))), True))
            for n, chunk in enumerate(chunks, 1))
        raw = count_tokens(html)
        rows.append({"case": folder.name, "raw": raw, "prompt": prompt, "ratio": prompt / raw,
                     "chunks": len(chunks), "ms": convert_ms})
        print(f"{folder.name:<42} raw {raw:>7}  prompt {prompt:>6}  {prompt / raw:6.3f}"
              f"  chunks {len(chunks)}  {convert_ms:5.0f} ms")
    ratio = median(row["ratio"] for row in rows)
    print(f"median prompt/raw = {ratio:.3f} (target <= {TARGET}); median prompt tokens "
          f"{median(r['prompt'] for r in rows):.0f} vs raw {median(r['raw'] for r in rows):.0f};"
          f" median markdown conversion {median(r['ms'] for r in rows):.0f} ms")
    print(json.dumps({"bench": "prompt_size", "pages": len(rows),
                      "median_ratio": round(ratio, 4), "target": TARGET,
                      "max_ratio": round(max(r["ratio"] for r in rows), 4),
                      "median_prompt_tokens": median(r["prompt"] for r in rows),
                      "median_raw_tokens": median(r["raw"] for r in rows),
                      "median_convert_ms": round(median(r["ms"] for r in rows), 1)}))
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
