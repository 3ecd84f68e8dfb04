from bench.commands.cli import entry

entry()
