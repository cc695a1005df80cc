"""The contract between workloads and whoever runs or reads them: the registry and
RunContext, targets, metrics, directions, what a track_ declares, the run report.
"""
