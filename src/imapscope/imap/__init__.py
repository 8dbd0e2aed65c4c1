"""The sans-IO IMAP codec: bytes in, typed events out; commands in, bytes out; both roles.

No sockets, no TLS, no asyncio, no clock: the IO layer (:mod:`imapscope.net`) and the sandbox
server drive it. See docs/codec.md for the public API and a worked example.
"""

from imapscope.imap._buffer import DEFAULT_MAX_LINE, DEFAULT_MAX_LITERAL, Frame, ReceiveBuffer
from imapscope.imap._commands import (
    Append,
    Authenticate,
    Check,
    Close,
    Command,
    Copy,
    Create,
    Delete,
    Enable,
    Expunge,
    Fetch,
    GetAcl,
    GetQuota,
    GetQuotaRoot,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Move,
    MyRights,
    Namespace,
    Noop,
    Rename,
    Search,
    Segment,
    Select,
    Sort,
    StartTLS,
    Status,
    Store,
    Subscribe,
    Thread,
    Unselect,
    Unsubscribe,
    encode,
)
from imapscope.imap._commands import Capability as CapabilityCommand
from imapscope.imap._connection import NEED_DATA, ClientConnection
from imapscope.imap._errors import (
    LimitExceededError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from imapscope.imap._events import (
    Acl,
    Address,
    AppendUid,
    BodyPart,
    BodyStructure,
    Bye,
    Capability,
    ContinuationRequest,
    CopyUid,
    Enabled,
    Envelope,
    ESearch,
    Exists,
    Flags,
    Greeting,
    IdResponse,
    ListResponse,
    Multipart,
    Quota,
    QuotaResource,
    QuotaRoot,
    Recent,
    Response,
    ResponseCode,
    StatusResponse,
    TaggedResponse,
    UnknownResponse,
    UntaggedStatus,
    Vanished,
    decode_words,
    parse_internaldate,
)
from imapscope.imap._events import (
    Expunge as ExpungeResponse,
)
from imapscope.imap._events import (
    Fetch as FetchResponse,
)
from imapscope.imap._events import (
    MyRights as MyRightsResponse,
)
from imapscope.imap._events import (
    Namespace as NamespaceResponse,
)
from imapscope.imap._events import (
    Search as SearchResponse,
)
from imapscope.imap._mutf7 import decode as decode_mailbox
from imapscope.imap._mutf7 import encode as encode_mailbox
from imapscope.imap._responses import parse_response
from imapscope.imap._sasl import SUPPORTED as SASL_MECHANISMS
from imapscope.imap._sasl import Mechanism
from imapscope.imap._sequence import compact as compact_sequence
from imapscope.imap._sequence import expand as expand_sequence
from imapscope.imap._sequence import split as split_sequence
from imapscope.imap._serialize import serialize_response, to_raw
from imapscope.imap._server import (
    SERVER_MAX_LINE,
    SERVER_MAX_LITERAL,
    BadCommand,
    CommandReceived,
    IdleDone,
    SaslResponse,
    ServerConnection,
    ServerEvent,
    TooLarge,
    parse_command,
)
from imapscope.imap._state import State, state_diagram
from imapscope.imap._values import Literal8, RawValue, Value


def raw_envelope(envelope: Envelope) -> RawValue:
    """An ENVELOPE as the raw value a server puts in ``FetchResponse.items["ENVELOPE"]``."""
    from imapscope.imap._serialize import envelope as serialize  # noqa: PLC0415

    return to_raw(serialize(envelope))


def raw_body(structure: BodyStructure, *, extensions: bool = True) -> RawValue:
    """A BODYSTRUCTURE (or, without extensions, BODY) as a raw FETCH item value."""
    from imapscope.imap._serialize import body as serialize  # noqa: PLC0415

    return to_raw(serialize(structure, extensions))


__all__ = [
    "DEFAULT_MAX_LINE",
    "DEFAULT_MAX_LITERAL",
    "NEED_DATA",
    "SASL_MECHANISMS",
    "SERVER_MAX_LINE",
    "SERVER_MAX_LITERAL",
    "Acl",
    "Address",
    "Append",
    "AppendUid",
    "Authenticate",
    "BadCommand",
    "BodyPart",
    "BodyStructure",
    "Bye",
    "Capability",
    "CapabilityCommand",
    "Check",
    "ClientConnection",
    "Close",
    "Command",
    "CommandReceived",
    "ContinuationRequest",
    "Copy",
    "CopyUid",
    "Create",
    "Delete",
    "ESearch",
    "Enable",
    "Enabled",
    "Envelope",
    "Exists",
    "Expunge",
    "ExpungeResponse",
    "Fetch",
    "FetchResponse",
    "Flags",
    "Frame",
    "GetAcl",
    "GetQuota",
    "GetQuotaRoot",
    "Greeting",
    "Id",
    "IdResponse",
    "Idle",
    "IdleDone",
    "LimitExceededError",
    "List",
    "ListResponse",
    "Literal8",
    "LocalProtocolError",
    "Login",
    "Logout",
    "Mechanism",
    "Move",
    "Multipart",
    "MyRights",
    "MyRightsResponse",
    "Namespace",
    "NamespaceResponse",
    "Noop",
    "ProtocolError",
    "Quota",
    "QuotaResource",
    "QuotaRoot",
    "RawValue",
    "ReceiveBuffer",
    "Recent",
    "RemoteProtocolError",
    "Rename",
    "Response",
    "ResponseCode",
    "SaslResponse",
    "Search",
    "SearchResponse",
    "Segment",
    "Select",
    "ServerConnection",
    "ServerEvent",
    "Sort",
    "StartTLS",
    "State",
    "Status",
    "StatusResponse",
    "Store",
    "Subscribe",
    "TaggedResponse",
    "Thread",
    "TooLarge",
    "UnknownResponse",
    "Unselect",
    "Unsubscribe",
    "UntaggedStatus",
    "Value",
    "Vanished",
    "compact_sequence",
    "decode_mailbox",
    "decode_words",
    "encode",
    "encode_mailbox",
    "expand_sequence",
    "parse_command",
    "parse_internaldate",
    "parse_response",
    "serialize_body",
    "serialize_envelope",
    "serialize_response",
    "split_sequence",
    "state_diagram",
]  # fmt: skip
