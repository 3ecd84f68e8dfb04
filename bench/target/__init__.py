"""The server under test: resolving or launching it, probing its dialect and token counts, scraping its metrics."""
