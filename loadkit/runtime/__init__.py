"""Process plumbing below Redis: stop signals and process groups, the parent-child
message shape, and what a process owns (told to its guard). Imports only common.
"""
