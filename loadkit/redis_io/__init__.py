"""Everything about talking to Redis and nothing about workloads: URL rules, the
embedded server, clients, liveness, key prefixes and their clean-up.
"""
