"""Name resolution through the system resolver: callers asking for one host at the same moment
share one lookup (serve connects many accounts on one server at once); nothing is kept after."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from imapscope.net import ResolveError, resolve


def test_concurrent_lookups_of_one_host_share_one_system_lookup() -> None:
    asked: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        real = loop.getaddrinfo
        delay = 0.05

        async def counting(host: str, *args: Any, **kwargs: Any) -> Any:
            asked.append(host)
            await asyncio.sleep(delay)  # still under way when the others ask
            return await real(host, *args, **kwargs)

        loop.getaddrinfo = counting  # type: ignore[method-assign]
        found = await asyncio.gather(
            *(resolve("localhost", nameserver=None, timeout=5) for _ in range(50))
        )
        assert asked == ["localhost"]
        assert "127.0.0.1" in found[0].ipv4
        assert all(f == found[0] for f in found)

        # Nothing is kept: the next caller asks again.
        await resolve("localhost", nameserver=None, timeout=5)
        assert asked == ["localhost"] * 2

        # One caller's deadline is not the others': the shared lookup goes on for them.
        delay = 0.3
        hasty = asyncio.create_task(resolve("localhost", nameserver=None, timeout=0.05))
        patient = asyncio.create_task(resolve("localhost", nameserver=None, timeout=5))
        with pytest.raises(ResolveError, match="timed out"):
            await hasty
        assert "127.0.0.1" in (await patient).ipv4
        assert asked == ["localhost"] * 3

    asyncio.run(main())
