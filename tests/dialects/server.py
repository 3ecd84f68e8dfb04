"""A loopback server that replays scripted answers (`Case.writes`) at their scripted times.

Serves `/v1/chat/completions` and `/v1/completions` on 127.0.0.1 (port 0) from a background
thread with its own event loop. Each request names its case: the last message's content
(chat) or the prompt (completions) is the case name, so one `bench run` over
`requests.inline` case names with `order: cycle` replays a whole group of cases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from loopback import LoopbackServer

from dialects.case import Case

MAX_HOLD_S = 10.0  # no handler outlives this, whatever the client does


class ScriptServer(LoopbackServer):
    """Context manager: `with ScriptServer(cases) as server: server.base_url ...`."""

    thread_name = "dialect-server"

    def __init__(self, cases: Iterable[Case]) -> None:
        super().__init__()
        self.cases = {case.name: case for case in cases}
        self.seen: list[str] = []  # case names, in the order requests arrived

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._answer)
        app.router.add_post("/v1/completions", self._answer)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": [{"id": "dialect-model", "object": "model"}]})

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        start = asyncio.get_running_loop().time()  # the script's time zero
        name = _case_name(await request.json())
        self.seen.append(name)
        case = self.cases.get(name)
        if case is None:
            return web.json_response({"error": {"message": f"no scripted case {name!r}"}}, status=404)
        headers = dict(case.headers)
        if case.content_type:  # "": none set (aiohttp then sends application/octet-stream)
            headers["Content-Type"] = case.content_type
        if case.body is not None:
            return web.Response(status=case.http_status, body=case.body, headers=headers)
        try:
            return await asyncio.wait_for(self._play(request, case, headers, start), MAX_HOLD_S)
        except (TimeoutError, ConnectionError):
            return web.Response(status=499)  # the client stopped reading (as it may after an error)

    async def _play(self, request: web.Request, case: Case, headers: dict[str, str],
                    start: float) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        resp = web.StreamResponse(status=case.http_status, headers=headers)
        await resp.prepare(request)
        for at, payload in case.writes:
            delay = start + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await resp.write(payload)
        await resp.write_eof()
        return resp


def _case_name(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        return str(messages[-1].get("content", ""))
    return str(body.get("prompt", ""))
