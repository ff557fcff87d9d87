"""Reads Covenant's event stream (JetStream `COVENANT_EVENTS`) from the beginning and prints how
many events of each type it holds, as JSON on stdout:

    python consumer.py --nats nats://127.0.0.1:4222 --gen DIR

It reads every message the stream held when it started (an ordered consumer from the first
message), decodes each as a `covenant.v1.EventEnvelope`, checks that the payload matches the
event type, and deduplicates by event id (delivery is at least once). See docs/EVENTS.md.
"""

import argparse
import asyncio
import collections
import json
import sys

import nats
from nats.js.api import DeliverPolicy

STREAM = "COVENANT_EVENTS"


async def count(nats_url: str, idle_seconds: float) -> dict:
    from covenant.v1 import events_pb2

    client = await nats.connect(nats_url)
    try:
        jetstream = client.jetstream()
        info = await jetstream.stream_info(STREAM)
        last = info.state.last_seq
        by_type = collections.Counter()
        seen = set()
        duplicates = 0
        mismatched = 0
        if last > 0:
            subscription = await jetstream.subscribe(
                "covenant.events.>", stream=STREAM, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
            )
            while True:
                message = await subscription.next_msg(timeout=idle_seconds)
                envelope = events_pb2.EventEnvelope()
                envelope.ParseFromString(message.data)
                if envelope.WhichOneof("payload") != envelope.event_type:
                    mismatched += 1
                if envelope.event_id in seen:
                    duplicates += 1
                else:
                    seen.add(envelope.event_id)
                    by_type[envelope.event_type] += 1
                if message.metadata.sequence.stream >= last:
                    break
            await subscription.unsubscribe()
        return {
            "stream_last_sequence": last,
            "events": sum(by_type.values()),
            "by_type": dict(sorted(by_type.items())),
            "duplicates": duplicates,
            "payload_mismatches": mismatched,
        }
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server URL")
    parser.add_argument("--gen", required=True, help="directory of the classes generate.py wrote")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds to wait for the next message")
    args = parser.parse_args()
    sys.path.insert(0, args.gen)
    print(json.dumps(asyncio.run(count(args.nats, args.idle)), indent=2))


if __name__ == "__main__":
    main()
