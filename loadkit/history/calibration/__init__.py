"""Simulated histories with known truth and the tables of how often the gate is
right on them (loadkit calibrate).
"""
