"""``sliceai sweep``: replays of every (trace, policy, allocator) on Ray (``sliceai[scale]``).

:mod:`sliceai.sweep.cells` (one cell: :func:`sliceai.replay.replay`, its result file and
rows; no Ray), :mod:`sliceai.sweep.runner` (the only module importing Ray),
:mod:`sliceai.sweep.report` (the Parquet/CSV table and the summary with plots),
:mod:`sliceai.sweep.commands` (the parser) and :mod:`sliceai.sweep.sweep_command`.
"""
