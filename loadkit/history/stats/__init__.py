"""Pure statistics over series: change points, drift, noise laws, the gate, the
posterior, the machine level and the scoring. No files, no processes.
"""
