"""The sans-IO IMAP codec: bytes in, typed events out; commands in, bytes out.

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
    StartTLS,
    Status,
    Store,
    Subscribe,
    Unselect,
    Unsubscribe,
    encode,
)
from imapscope.imap._commands import Capability as CapabilityCommand
from imapscope.imap._connection import NEED_DATA, ClientConnection
from imapscope.imap._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
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
from imapscope.imap._sequence import split as split_sequence
from imapscope.imap._state import State, state_diagram

__all__ = [
    "DEFAULT_MAX_LINE", "DEFAULT_MAX_LITERAL", "NEED_DATA", "SASL_MECHANISMS",
    "Acl", "Address", "Append", "AppendUid", "Authenticate", "BodyPart", "BodyStructure", "Bye",
    "Capability", "CapabilityCommand", "Check", "ClientConnection", "Close", "Command",
    "ContinuationRequest", "Copy", "CopyUid", "Create", "Delete", "ESearch", "Enable", "Enabled",
    "Envelope", "Exists", "Expunge", "ExpungeResponse", "Fetch", "FetchResponse", "Flags", "Frame",
    "GetAcl", "GetQuotaRoot", "Greeting", "Id", "IdResponse", "Idle", "List", "ListResponse",
    "LocalProtocolError", "Login", "Logout", "Mechanism", "Move", "Multipart", "MyRights",
    "MyRightsResponse", "Namespace", "NamespaceResponse", "Noop", "ProtocolError", "Quota",
    "QuotaResource", "QuotaRoot", "ReceiveBuffer", "Recent", "RemoteProtocolError", "Rename",
    "Response", "ResponseCode", "Search", "SearchResponse", "Segment", "Select", "StartTLS",
    "State", "Status", "StatusResponse", "Store", "Subscribe", "TaggedResponse",
    "UnknownResponse", "Unselect", "Unsubscribe", "UntaggedStatus", "Vanished",
    "compact_sequence", "decode_mailbox", "decode_words", "encode", "encode_mailbox",
    "parse_internaldate", "parse_response", "split_sequence", "state_diagram",
]  # fmt: skip
