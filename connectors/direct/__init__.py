"""Direct Secure Messaging: S/MIME (:mod:`.smime`), IHE XDM packages (:mod:`.xdm`), the message and MDNs
(:mod:`.message`), what a delivery takes from its Bundle (:mod:`.plan`) and the SMTP connector
(:mod:`.connector`); a sandbox HISP pair in :mod:`sandboxes.hisp`."""

from connectors.direct.connector import DirectConfig, DirectConnector

__all__ = ["DirectConfig", "DirectConnector"]
