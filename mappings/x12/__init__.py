"""ASC X12 005010, pure: the 837P and 270 writers and the readers of 999, 277CA, 835 and 271."""
