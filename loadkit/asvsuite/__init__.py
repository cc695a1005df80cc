"""The bridge to asv: track declarations, the suite's runner (each load once),
the values asv recorded, loadkit bench and loadkit serve.
"""
