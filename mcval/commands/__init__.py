"""One module per ``mcval`` verb, each a plain function with typed keyword options.

``check``, ``schema``, ``measure``, ``validate``, ``table``, ``import_table``, ``demo``: each
takes what its command line says (paths as ``Path``, flags as ``bool``), prints its output
and returns an ``ExitCode``. They raise ``InputError``/``RunnerError`` for what they cannot
do; ``mcval.cli`` alone parses arguments, sets up the output and turns exceptions into exit
codes. Modules import heavy code (torch, the measuring chain) inside the function, so
``mcval check`` stays torch-free. A new verb: a module here plus its parser in ``cli.py``.
"""
