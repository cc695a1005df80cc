"""Reading what a history is made of: asv results and benchmarks.json, the commit
order from git or index.json, the run report's targets for the page.
"""
