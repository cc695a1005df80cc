"""Utilities every layer may use: errors and exit codes, redaction, argument types,
path checks, atomic files, the page's folder, the process title, forked map. Imports
nothing else of loadkit.
"""
