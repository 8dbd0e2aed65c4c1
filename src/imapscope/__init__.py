"""imapscope: diagnose, monitor and sandbox IMAP mailboxes.

The package is layered (see docs/architecture.md); each subpackage does one thing:

- :mod:`imapscope.imap`     the sans-IO IMAP codec, client and server roles (no sockets, no clock)
- :mod:`imapscope.net`      the only place that touches sockets and TLS; emits trace events
- :mod:`imapscope.probe`    the troubleshooting ladder and the catalogue of findings
- :mod:`imapscope.sync`     per-account sync engine with named running states
- :mod:`imapscope.store`    storage interface (SQLite by default, PostgreSQL for scale-out)
- :mod:`imapscope.api`      REST API, event stream and metrics
- :mod:`imapscope.web`      the admin UI
- :mod:`imapscope.sandbox`  a real IMAP server with SMTP delivery and fault injection
- :mod:`imapscope.cli`      thin commands over the pieces above
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
