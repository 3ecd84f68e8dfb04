"""Keeping credentials out of what bench stores and prints.

Server commands often carry a key (`vllm serve ... --api-key sk-...`, `HF_TOKEN=...` in a
launch env); run.json and server.log must show the command without it.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "is_secret_name", "redact_argv", "redact_command_string", "redact_env", "redact_scenario"]

MASK = "***"
_SECRET_NAME = re.compile(r"(api[-_]?key|token|secret|password|passwd|credential|auth)", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact_argv(argv: list[str]) -> list[str]:
    """`--api-key X`, `--api-key=X`, `HF_TOKEN=X` -> the value masked; the rest unchanged."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        name, eq, _value = arg.partition("=")
        if eq and is_secret_name(name):
            out.append(f"{name}={MASK}")
        elif arg.startswith("-") and is_secret_name(arg):
            out.append(arg)
            hide_next = True
        else:
            out.append(arg)
    return out


def redact_env(env: dict[str, Any]) -> dict[str, Any]:
    return {k: (MASK if is_secret_name(k) else v) for k, v in env.items()}


def redact_scenario(data: dict[str, Any]) -> dict[str, Any]:
    """A scenario dump (run.json) with the launch command's and env's secrets masked."""
    target = dict(data.get("target") or {})
    launch = target.get("launch")
    if isinstance(launch, dict):
        launch = dict(launch)
        command = launch.get("command")
        if isinstance(command, list):
            launch["command"] = redact_argv([str(a) for a in command])
        elif isinstance(command, str):
            launch["command"] = redact_command_string(command)
        if isinstance(launch.get("env"), dict):
            launch["env"] = redact_env(launch["env"])
        target["launch"] = launch
    return {**data, "target": target}


def redact_command_string(command: str) -> str:
    import shlex

    try:
        return shlex.join(redact_argv(shlex.split(command)))
    except ValueError:  # unbalanced quotes: mask everything after the first secret-looking word
        return MASK if is_secret_name(command) else command
