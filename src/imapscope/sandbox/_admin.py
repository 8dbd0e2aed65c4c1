"""The sandbox's admin HTTP API: change faults while the server runs.

    GET    /faults          the rules, as JSON
    POST   /faults          add a rule ({"spec": "LOGIN:no:code=UNAVAILABLE"}, the rule's fields,
                            or {"persona": "gmail-app-password"}); 201 with the rules added
    DELETE /faults          remove every rule
    DELETE /faults/{id}     remove one rule (404 if there is none with that id)

It runs on loopback in the sandbox's own event loop (uvicorn), so a change applies to the next
command of every session. It shows no users or passwords.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from imapscope.sandbox._faults import FaultError, FaultRule, Faults, parse_rule, persona


def admin_app(faults: Faults) -> Starlette:
    async def list_rules(request: Request) -> JSONResponse:
        return JSONResponse([rule.to_json() for rule in faults.rules])

    async def add_rule(request: Request) -> JSONResponse:
        try:
            body: Any = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        try:
            if "persona" in body:
                added = [faults.add(rule) for rule in persona(str(body["persona"]))]
            elif "spec" in body:
                added = [faults.add(parse_rule(str(body["spec"])))]
            else:
                body.pop("id", None)
                added = [faults.add(FaultRule(**body))]
        except (FaultError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse([rule.to_json() for rule in added], status_code=201)

    async def clear_all(request: Request) -> JSONResponse:
        return JSONResponse({"removed": faults.clear()})

    async def clear_one(request: Request) -> JSONResponse:
        removed = faults.clear(int(request.path_params["rule_id"]))
        if not removed:
            return JSONResponse({"error": "no rule with that id"}, status_code=404)
        return JSONResponse({"removed": removed})

    return Starlette(
        routes=[
            Route("/faults", list_rules, methods=["GET"]),
            Route("/faults", add_rule, methods=["POST"]),
            Route("/faults", clear_all, methods=["DELETE"]),
            Route("/faults/{rule_id:int}", clear_one, methods=["DELETE"]),
        ]
    )


class AdminServer:
    """uvicorn serving :func:`admin_app` inside the running event loop."""

    def __init__(self, faults: Faults, host: str, port: int) -> None:
        config = uvicorn.Config(admin_app(faults), host=host, port=port, log_level="warning",
                                lifespan="off")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None
        self.port = port

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()  # raises what stopped it (a port in use, say)
            await asyncio.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
