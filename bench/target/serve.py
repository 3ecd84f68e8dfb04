"""A server-config sweep's command lines: `--serve-cmd "CMD {flags}"` made concrete per config.

In the template, `{flags}` (a word of its own) becomes the config's parameters as flags,
`{port}` a port free a moment ago, and `{NAME}` the value of parameter NAME. Parameters
become flags as vLLM and SGLang spell them: `max_num_seqs: 16` is `--max-num-seqs 16`,
`true` is the bare flag, `false` is `--no-FLAG` (argparse's BooleanOptionalAction, which
vLLM uses), `null` leaves the flag out; a name written with dashes (`-tp`) is used as is.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from bench.errors import BenchInputError
from bench.scenario.serve_grid import ParamValue, ServeConfig
from bench.target.launch import free_port

__all__ = ["FLAGS", "ServeCommand", "param_flags", "serve_command", "sim_serve_template"]

FLAGS = "{flags}"
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.-]+)\}")


@dataclass(frozen=True)
class ServeCommand:
    """The argv that starts one configuration's server and the base URL it serves."""

    argv: list[str]
    base_url: str


def param_flags(params: dict[str, ParamValue]) -> list[str]:
    """The flags of a configuration's parameters, in order (see the module docstring)."""
    argv: list[str] = []
    for key, value in params.items():
        flag = key if key.startswith("-") else "--" + key.replace("_", "-")
        if value is None:
            continue
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append("--no-" + flag.lstrip("-"))
        else:
            argv += [flag, str(value)]
    return argv


def serve_command(template: str, config: ServeConfig, base_url: str | None) -> ServeCommand:
    """The argv and base URL of `config` from the template.

    With `{port}` in the template the server listens on a free port of 127.0.0.1 (at the
    path of `base_url`, or /v1); without it the server must serve `base_url` itself.
    BenchInputError when neither gives a URL or a placeholder names no parameter.
    """
    words = shlex.split(template)
    if not words:
        raise BenchInputError("--serve-cmd: empty command")
    port: int | None = None
    if any("{port}" in word for word in words):
        port = free_port()
        base_url = _with_port(base_url or "http://127.0.0.1/v1", port)
    elif base_url is None:
        raise BenchInputError("--serve-cmd: put {port} in the command, or give the URL it serves as target.base_url")
    values: dict[str, str] = {key: _word(value) for key, value in config.params.items()}
    values["name"] = config.name
    if port is not None:
        values["port"] = str(port)
    argv: list[str] = []
    for word in words:
        if word == FLAGS:
            argv += param_flags(config.params)
        else:
            argv.append(_substitute(word, values, config))
    return ServeCommand(argv, base_url)


def sim_serve_template(profile: str, seed: int) -> str:
    """The command of the built-in simulator as a launched server: its profile fields are flags."""
    words = [sys.executable, "-m", "bench.sim", "--host", "127.0.0.1", "--port", "{port}", "--profile", profile,
             "--seed", str(seed), "--parent-pid", str(os.getpid())]
    return " ".join(word if word == "{port}" else shlex.quote(word) for word in words) + " " + FLAGS


def _substitute(word: str, values: dict[str, str], config: ServeConfig) -> str:
    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "flags":
            raise BenchInputError("--serve-cmd: {flags} must be a word of its own")
        if key not in values:
            raise BenchInputError(f"--serve-cmd: {{{key}}} is not a parameter of configuration {config.name!r} "
                                  f"(it has {', '.join(config.params) or 'none'})")
        return values[key]

    return _PLACEHOLDER.sub(one, word)


def _word(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    return urlunsplit((parts.scheme, f"{host}:{port}", parts.path, "", "")).rstrip("/")
