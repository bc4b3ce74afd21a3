"""Partner connectors: one adapter per partner kind, each with a sandbox server.

Connectors import only ``mappings`` and their own libraries, never ``hub`` or ``workers``.
"""
