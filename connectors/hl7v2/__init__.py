"""HL7 v2.5.1 over MLLP: the ``hl7v2`` connector (outbound), the MLLP server and client, and a
sandbox MLLP peer (:mod:`sandboxes.mllp`)."""

from connectors.hl7v2.connector import Hl7v2Config, Hl7v2Connector, control_id_for
from connectors.hl7v2.mllp import (
    CloseConnection,
    FrameError,
    FrameReader,
    MllpClient,
    MllpClientError,
    MllpServer,
    MllpServerThread,
    frame,
    nak_for,
)

__all__ = [
    "CloseConnection",
    "FrameError",
    "FrameReader",
    "Hl7v2Config",
    "Hl7v2Connector",
    "MllpClient",
    "MllpClientError",
    "MllpServer",
    "MllpServerThread",
    "control_id_for",
    "frame",
    "nak_for",
]
