"""MLLP (Minimal Lower Layer Protocol, HL7 v2 transport): framing, an asyncio server and a client.

A frame is ``0x0B`` (start block) + the message + ``0x1C 0x0D`` (end block + CR).

:class:`MllpServer` (asyncio) serves many connections at once and many messages per connection,
one at a time per connection and in order (HL7 original mode is a strict request/response per
connection). What a sender may get wrong never stops the listener:

* bytes before a start block (noise, a telnet probe) are skipped;
* a frame larger than ``max_message_bytes`` is read to its end and discarded, then answered with
  an ``AR`` (the stream stays in step), or the connection is closed if no end block comes;
* a frame that stops mid-way (the sender closed, or nothing more within ``read_timeout``) is
  dropped; if the sender is still there it gets an ``AR`` before the connection is closed;
* a start block inside a frame restarts the frame (the sender gave up on the previous one);
* a connection that sends nothing for ``idle_timeout`` is closed; beyond ``max_connections`` new
  connections are closed at once;
* an exception of the handler is answered with ``AR`` (HL7 error 207) and logged without content.

The handler takes the message bytes and returns the bytes of the answer (framed here), or ``b""``
for no answer (enhanced mode, MSH-15 ``NE``).

:class:`MllpClient` is blocking (workers are synchronous): it sends one message and waits for the
frame that answers it, keeping the connection open between messages and reopening it when the
partner closed it.

:mod:`~connectors.hl7v2.mllp.framing` (frames, the reader, ``nak_for``),
:mod:`~connectors.hl7v2.mllp.server` and :mod:`~connectors.hl7v2.mllp.client`; why the project keeps
its own transport rather than python-hl7's ``hl7.mllp``: ``docs/adr/0006-mllp-transport.md``.
"""

from connectors.hl7v2.mllp.client import MllpClient, MllpClientError
from connectors.hl7v2.mllp.framing import (
    DEFAULT_MAX_MESSAGE_BYTES,
    END_BLOCK,
    START_BLOCK,
    FrameError,
    FrameReader,
    frame,
    nak_for,
    new_control_id,
)
from connectors.hl7v2.mllp.server import (
    CloseConnection,
    FrameErrorHandler,
    Handler,
    MllpServer,
    MllpServerThread,
    ServerStats,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "END_BLOCK",
    "START_BLOCK",
    "CloseConnection",
    "FrameError",
    "FrameErrorHandler",
    "FrameReader",
    "Handler",
    "MllpClient",
    "MllpClientError",
    "MllpServer",
    "MllpServerThread",
    "ServerStats",
    "frame",
    "nak_for",
    "new_control_id",
]
