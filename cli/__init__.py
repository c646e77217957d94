"""The ``cluster-eval`` command line: argument parsing, one handler per command, summaries.

``cli.main`` parses arguments and turns failures into one line; ``cli.commands`` is the table
of commands; each ``cli.<stage>`` module runs that stage's flow and renders its summary.
"""
