"""Showing scores: the check table and JSON, the history page and its SVG plots, the
asv site made to work offline.
"""
