"""Renderers of results: terminal (rich), Markdown, JUnit XML. They read results records and nothing else."""
