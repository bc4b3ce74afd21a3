"""Therapy Interop Hub: a FHIR R4 gateway and sync engine for outpatient rehab clinics."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("therapy-hub")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"
