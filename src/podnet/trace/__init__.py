"""Traces: the typed answer of ``podnet trace`` (model), how it is computed over a snapshot (engine,
endpoints, places) and shown (text, JSON, Mermaid)."""
