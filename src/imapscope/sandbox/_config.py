"""The sandbox's config file (TOML): users and faults at start, as the flags give them.

open = false
imap = "both"                   # or "rev1", "rev2": which IMAP the sandbox speaks
users = [{ name = "alice", password = "secret" }, { name = "bob", password = "pw" }]

[[faults]]
spec = "LOGIN:no:code=UNAVAILABLE,text=Come back later"

[[faults]]
persona = "gmail-app-password"

[[faults]]                      # or a rule's fields
command = "FETCH"
action = "delay"
delay_ms = 500
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imapscope.sandbox._faults import FaultError, FaultRule, parse_rule, persona


class ConfigError(ValueError):
    """The config file is unusable; the message names the file and what is wrong."""


@dataclass
class SandboxConfig:
    users: list[tuple[str, str]] = field(default_factory=list)
    open_mode: bool = False
    faults: list[FaultRule] = field(default_factory=list)
    imap: str | None = None  # "both", "rev1" or "rev2"


def load_config(path: Path) -> SandboxConfig:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    unknown = set(data) - {"users", "open", "faults", "imap"}
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}; "
                          "expected users, open, faults, imap")  # fmt: skip
    config = SandboxConfig(open_mode=bool(data.get("open", False)))
    if "imap" in data:
        if data["imap"] not in ("both", "rev1", "rev2"):
            raise ConfigError(f"{path}: imap is both, rev1 or rev2, not {data['imap']!r}")
        config.imap = data["imap"]
    for index, user in enumerate(data.get("users", [])):
        if not isinstance(user, dict) or not user.get("name") or "password" not in user:
            raise ConfigError(f"{path}: users[{index}] needs a name and a password")
        config.users.append((str(user["name"]), str(user["password"])))
    for index, rule in enumerate(data.get("faults", [])):
        try:
            if "spec" in rule:
                config.faults.append(parse_rule(str(rule["spec"])))
            elif "persona" in rule:
                config.faults.extend(persona(str(rule["persona"])))
            else:
                config.faults.append(FaultRule(**rule))
        except (FaultError, TypeError) as exc:
            raise ConfigError(f"{path}: faults[{index}]: {exc}") from exc
    return config
