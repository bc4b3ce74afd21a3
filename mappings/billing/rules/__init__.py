"""The scrubber's rules, by subject; each module has ``check(claim, context) -> Iterator[Finding]``."""
