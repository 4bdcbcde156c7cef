"""``bgremover watch``: every image that appears in a folder becomes a job, and its result
lands in an output folder, through this process's own job system or a running server.

``folder`` tells when a file is complete, ``ledger`` remembers what was done across
restarts, ``local`` and ``remote`` are the two ways to run the jobs, ``runner`` ties them.
"""
