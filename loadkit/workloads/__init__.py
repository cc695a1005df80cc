"""The four systems under test and their load generators. Nothing below imports them:
the runner loads a workload by name (loadkit.runs.workload).
"""
