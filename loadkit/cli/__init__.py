"""The loadkit command line: one module per command, a registry in main.py. The
argparse namespace never leaves this package.
"""
