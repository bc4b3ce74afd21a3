"""Celery workers that deliver routed messages to partner systems."""
