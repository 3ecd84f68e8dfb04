"""Sending and recording: the HTTP client, the stream recorder, the runner and its worker pools."""
