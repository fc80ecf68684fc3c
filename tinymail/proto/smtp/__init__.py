"""The sans-I/O SMTP cores: ``from tinymail.proto import smtp; smtp.ServerConnection(...)``."""

from tinymail.proto.smtp.events import (
    CLOSED,
    NEED_DATA,
    AuthCredentials,
    DataAborted,
    DataChunk,
    DataEnd,
    DataStart,
    Decision,
    Event,
    MailFrom,
    RcptTo,
    Sentinel,
    StartTLS,
)
from tinymail.proto.smtp.replies import Reply
from tinymail.proto.smtp.server import Limits, ServerConnection

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "AuthCredentials",
    "DataAborted",
    "DataChunk",
    "DataEnd",
    "DataStart",
    "Decision",
    "Event",
    "Limits",
    "MailFrom",
    "RcptTo",
    "Reply",
    "Sentinel",
    "ServerConnection",
    "StartTLS",
]
