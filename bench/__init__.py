"""`make bench`: the harness against the way a sweep is written without it."""
