"""Redis event bus latency: an event published in one process → a subscriber in another.

A publisher process (spawned, with its own ``RedisEventBus``, as a worker or another web
process has) publishes ``--events`` ``job.progress`` events, one ``publish`` call each, at
``--rate`` per second; each carries ``sent_at`` (``time.time()`` just before the call). This
process subscribes on a bus instance of its own and records ``received − sent_at`` per event
(one machine, one clock). It also times the publish calls themselves (the Lua script's round
trip) and checks integrity: every event arrives once, in seq order.

Needs a Redis (``--url``, default redis://127.0.0.1:6379/0); it uses a fresh key prefix and
deletes its keys afterwards. Run by hand from the repository root:

    .venv/bin/python bench/redis_bus_bench.py --events 2000 --rate 500
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
import uuid
from typing import Any

import redis

from bgremover.jobs.bus.redis import RedisEventBus
from common import spread  # bench/ is on sys.path when run as a script


def publish(url: str, prefix: str, events: int, rate: float, ready: Any, go: Any) -> None:
    """The publisher process: ``events`` single publishes, paced at ``rate`` per second."""
    bus = RedisEventBus(url, prefix=prefix, follow=False)
    ready.set()
    go.wait()
    durations = []
    start = time.perf_counter()
    for i in range(events):
        # Paced against the start, so one slow call does not shift every later one.
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        began = time.perf_counter()
        # A job id per event: the subscriber's buffer would merge progress of one job.
        bus.publish("job.progress", {"id": f"j{i}", "i": i, "sent_at": time.time()})
        durations.append(time.perf_counter() - began)
    print(f"publish call (Lua script round trip): {spread(durations, counted=True)}")
    bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=500.0, help="events per second")
    args = parser.parse_args()
    prefix = f"bgremover-bench:{uuid.uuid4().hex[:12]}:events"
    context = mp.get_context("spawn")
    ready, go = context.Event(), context.Event()
    publisher = context.Process(
        target=publish, args=(args.url, prefix, args.events, args.rate, ready, go)
    )
    publisher.start()
    bus = RedisEventBus(args.url, prefix=prefix)
    try:
        ready.wait()
        subscription = bus.subscribe(maxsize=args.events + 1)
        go.set()
        latencies, seqs, indexes = [], [], []
        while len(latencies) < args.events:
            event = subscription.get(30)
            if event is None:
                raise SystemExit(f"only {len(latencies)} of {args.events} events arrived")
            latencies.append(time.time() - event.data["sent_at"])
            seqs.append(event.seq)
            indexes.append(event.data["i"])
        publisher.join()
        in_order = seqs == sorted(seqs) and indexes == list(range(args.events))
        print(f"publish → subscriber in another process: {spread(latencies, counted=True)}")
        print(f"every event once, in seq order: {in_order}")
    finally:
        bus.close()
        if publisher.is_alive():
            publisher.kill()
        with redis.Redis.from_url(args.url) as client:
            keys = list(client.scan_iter(match=f"{prefix}:*"))
            if keys:
                client.delete(*keys)


if __name__ == "__main__":
    main()
