"""Partner connectors: one adapter per partner kind (their sandbox partners live in :mod:`sandboxes`).

Connectors import only ``mappings`` and their own libraries, never ``hub`` or ``workers``.
"""
