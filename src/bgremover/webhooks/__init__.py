"""Webhooks: signed HTTP deliveries of job and batch events (Standard Webhooks) to servers
the operator chose.

``jobs.outbox`` writes each delivery in the transaction of the change it reports;
``dispatcher`` claims and sends them (``sender``, through the address ``guard``); ``store``
is what the API shows.
"""
