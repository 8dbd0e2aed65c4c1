"""The connection layer: asyncio TCP, implicit TLS, STARTTLS and proxies.

The only module that touches sockets and TLS; everything it does is emitted as trace events.

Not built yet: arrives with the check issue (#4).
"""
