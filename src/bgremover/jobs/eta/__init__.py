"""Estimated times, in one home: the per-stage clock that estimates a job's remaining seconds
(``clock``), the timings it learns from finished runs, kept in the database (``timings``), the
wait of queued batches (``queue_wait``), and how far estimates were from the truth
(``accuracy``)."""
