"""The clearinghouse connector: X12 837P claim files out, 999/277CA/835 response files in (SFTP or HTTPS)."""

from __future__ import annotations

from connectors.x12_billing.config import HttpsSettings, SftpSettings, X12BillingConfig, host_key_fingerprint
from connectors.x12_billing.connector import X12BillingConnector
from connectors.x12_billing.https import X12_CONTENT_TYPE
from connectors.x12_billing.model import RemoteFile, SubmitReceipt, remote_name

__all__ = ["X12_CONTENT_TYPE", "HttpsSettings", "RemoteFile", "SftpSettings", "SubmitReceipt", "X12BillingConfig",
           "X12BillingConnector", "host_key_fingerprint", "remote_name"]
