"""The receive API for automated tests: expectations (criteria, registered against the
server's own order, judged as the sync engine stores new mail, answered by held requests), the
links, one-time codes and attachments of the matched message, and the near misses that say why
nothing matched."""

from imapscope.expect._criteria import Criteria, Miss, TextRule
from imapscope.expect._extract import CodePattern, PatternError, codes, compile_pattern, links
from imapscope.expect._service import (
    DEFAULT_LIFETIME,
    MAX_LIFETIME,
    MAX_WAIT,
    ExpectError,
    ExpectService,
    message_json,
)

__all__ = [
    "DEFAULT_LIFETIME",
    "MAX_LIFETIME",
    "MAX_WAIT",
    "CodePattern",
    "Criteria",
    "ExpectError",
    "ExpectService",
    "Miss",
    "PatternError",
    "TextRule",
    "codes",
    "compile_pattern",
    "links",
    "message_json",
]
