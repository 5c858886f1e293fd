"""Python kafkaesk 0.8.5 side of the kafkaesk benchmarks.

Run by the `kafkaesk-bench` binary inside the virtual environment that
`setup.sh` creates; prints one JSON object on its last stdout line:

    python bench.py consume --kafka 127.0.0.1:9092 --prefix p. --stream consume \
        --group g --messages 200000 [--concurrency 500]
    python bench.py publish --kafka 127.0.0.1:9092 --prefix p. --stream publish \
        --messages 200000

The message and its values match `Bench::sample` in `bench/src/lib.rs`.
Timing matches the Rust side: consume throughput runs from the first handled
message to the last; publish from the first send to the last acknowledgement.
CPU time is this process's user + system time over the same run.
"""

import argparse
import asyncio
import json
import logging
import resource
import sys
import time
from typing import List, Optional

import kafkaesk
import pydantic


class Bench(pydantic.BaseModel):
    id: int
    name: str
    tags: List[str]
    value: float
    active: bool
    note: str


def sample(i: int) -> Bench:
    return Bench(
        id=i,
        name=f"bench-item-{i % 100_000_000:08d}",
        tags=["alpha", "beta", "gamma"],
        value=i * 0.5 + 0.25,
        active=i % 2 == 0,
        note="the quick brown fox jumps over the lazy dog, twice",
    )


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_app(args: argparse.Namespace) -> kafkaesk.Application:
    app = kafkaesk.Application(
        kafka_servers=[args.kafka],
        topic_prefix=args.prefix,
        kafka_settings=json.loads(args.kafka_settings),
    )
    app.schema("Bench", version=1)(Bench)
    return app


async def consume(args: argparse.Namespace) -> dict:
    app = make_app(args)
    state = {"first": None, "last": None, "count": 0, "sum": 0}

    @app.subscribe(args.stream, group=args.group, concurrency=args.concurrency)
    async def handler(data: Bench) -> None:
        now = time.perf_counter()
        if state["first"] is None:
            state["first"] = now
        state["sum"] += data.id
        state["count"] += 1
        if state["count"] == args.messages:
            state["last"] = now

    cpu0 = cpu_seconds()
    wall0 = time.perf_counter()
    consumed = await app.consume_for(args.messages, seconds=args.timeout)
    cpu = cpu_seconds() - cpu0
    wall = time.perf_counter() - wall0
    if state["count"] < args.messages or state["first"] is None or state["last"] is None:
        raise SystemExit(
            f"python kafkaesk consumed {state['count']} of {args.messages} messages "
            f"in {args.timeout} s (consume_for returned {consumed})"
        )
    return {
        "messages": state["count"],
        "seconds": state["last"] - state["first"],
        "wall_seconds": wall,
        "cpu_seconds": cpu,
    }


async def publish(args: argparse.Namespace) -> dict:
    app = make_app(args)
    data = [sample(i) for i in range(args.messages)]
    async with app:
        # Connects the producer and checks the topic outside the timed run, as
        # the Rust side does with its warm-up message.
        await app.publish_and_wait(args.stream, sample(-1))
        cpu0 = cpu_seconds()
        wall0 = time.perf_counter()
        futures = [await app.publish(args.stream, d) for d in data]
        await asyncio.gather(*futures)
        wall = time.perf_counter() - wall0
        cpu = cpu_seconds() - cpu0
    return {
        "messages": len(data),
        "seconds": wall,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
    }


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=["consume", "publish"])
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--group", default="bench-python")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="omit for kafkaesk's default"
    )
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument(
        "--kafka-settings",
        default="{}",
        help="JSON object of aiokafka settings, passed as kafkaesk's kafka_settings",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    run = consume if args.scenario == "consume" else publish
    result = asyncio.run(run(args))
    result.update(
        {
            "scenario": args.scenario,
            "concurrency": args.concurrency,
            "kafkaesk_version": getattr(kafkaesk, "__version__", None)
            or _distribution_version("kafkaesk"),
            "python": sys.version.split()[0],
        }
    )
    print(json.dumps(result), flush=True)


def _distribution_version(name: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    main()
