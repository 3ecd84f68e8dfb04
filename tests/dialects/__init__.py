"""The stream-dialect corpus (issue 14): scripted streams with hand-written truths.

A package (not a plain test directory) so that its modules, some named after the servers
they imitate (`cases/openai.py`), never shadow the real packages of the same name.
"""
