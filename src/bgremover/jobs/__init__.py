"""The job core: the job store (``service.JobService``, its contract in ``contract``), the
state machine (``states``), batches and sessions, ETA (``eta/``), the event bus and its
events. Nothing is re-exported here: import each name from the module that holds it, so a
command that needs only ``jobs.eta.clock`` (the CLI's estimates) does not load the database
layer."""
