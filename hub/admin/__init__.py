"""Administration: the JSON admin API under /admin/api."""
