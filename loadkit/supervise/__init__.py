"""Processes that run workloads and clean up after them: the orchestrator, the worker,
the guard of a command killed outright.
"""
