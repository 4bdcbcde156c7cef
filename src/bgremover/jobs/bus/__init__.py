"""The event bus: the contract, event types and payloads (``base``), the bus of one process
(``memory``), the Redis stream shared by a cluster (``redis``), and progress coalescing
(``throttle``)."""
