"""Ingestion of raw review and relevance files into bronze tables."""
