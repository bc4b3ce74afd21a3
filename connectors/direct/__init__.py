"""Direct Secure Messaging: S/MIME (:mod:`.smime`), IHE XDM packages (:mod:`.xdm`), the message and MDNs
(:mod:`.message`) and the SMTP connector (:mod:`.connector`)."""
