"""LLM extraction: an OpenAI-compatible client, prompts, chunking, cache, budget, grounding."""
