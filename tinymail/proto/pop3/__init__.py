"""Sans-I/O POP3 server core: ``ServerConnection`` plus its decision events."""

from tinymail.proto.pop3.events import (
    CLOSED,
    NEED_DATA,
    Authenticate,
    Decision,
    FetchMessage,
    Listing,
    ListMaildrop,
    OpenMaildrop,
    Sentinel,
    StartTLS,
    Update,
)
from tinymail.proto.pop3.server import Limits, Reply, ServerConnection, State

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "Authenticate",
    "Decision",
    "FetchMessage",
    "Limits",
    "ListMaildrop",
    "Listing",
    "OpenMaildrop",
    "Reply",
    "Sentinel",
    "ServerConnection",
    "StartTLS",
    "State",
    "Update",
]
