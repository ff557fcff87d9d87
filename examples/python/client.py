"""Calls Covenant's gRPC API from Python: records a customer, a promise and its keeping through
`Ledger`, then asks `Standing` for their trust with read-your-writes, and prints it as JSON:

    python client.py --ledger 127.0.0.1:50051 --standing 127.0.0.1:50052 --customer py-1 --gen DIR
"""

import argparse
import datetime
import json
import sys
import uuid


def run(ledger_addr: str, standing_addr: str, customer: str) -> dict:
    import grpc
    from google.protobuf import duration_pb2, timestamp_pb2
    from covenant.v1 import common_pb2, events_pb2, ledger_pb2, ledger_pb2_grpc, standing_pb2, standing_pb2_grpc

    def header(command: str) -> common_pb2.CommandHeader:
        return common_pb2.CommandHeader(
            customer_id=customer,
            command_id=f"{customer}-{command}",
            actor=common_pb2.Actor(kind=common_pb2.ACTOR_KIND_AGENT, id="agent-py"),
            team="support",
            channel=common_pb2.CHANNEL_PHONE,
        )

    due = timestamp_pb2.Timestamp()
    due.FromDatetime(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1))
    positions = []
    with grpc.insecure_channel(ledger_addr) as channel:
        ledger = ledger_pb2_grpc.LedgerStub(channel)
        replies = [
            ledger.RegisterCustomer(
                ledger_pb2.RegisterCustomerRequest(
                    header=header("register"),
                    name="Grace Hopper",
                    locale="en-US",
                    timezone="America/New_York",
                    segment="smb",
                    source="python",
                    tier=events_pb2.TIER_STANDARD,
                )
            ),
            ledger.MakePromise(
                ledger_pb2.MakePromiseRequest(
                    header=header("promise"),
                    promise_id="callback-1",
                    kind=events_pb2.PROMISE_KIND_CALLBACK,
                    description="call back about the invoice",
                    made_by="agent-py",
                    due_at=due,
                    grace=duration_pb2.Duration(seconds=600),
                )
            ),
            ledger.KeepPromise(
                ledger_pb2.KeepPromiseRequest(header=header("kept"), promise_id="callback-1", evidence="called")
            ),
        ]
        for reply in replies:
            positions.extend(reply.positions)
    with grpc.insecure_channel(standing_addr) as channel:
        standing = standing_pb2_grpc.StandingStub(channel)
        trust = standing.GetTrust(
            standing_pb2.GetTrustRequest(
                customer_id=customer,
                consistency=standing_pb2.ReadConsistency(min_position=positions, wait_ms=10_000),
            )
        )
    return {
        "customer_id": trust.customer_id,
        "stream_version": trust.stream_version,
        "score": trust.score,
        "band": standing_pb2.TrustBand.Name(trust.band),
        "model_version": trust.model_version,
        "positions": [[position.partition, position.offset] for position in positions],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ledger", default="127.0.0.1:50051")
    parser.add_argument("--standing", default="127.0.0.1:50052")
    parser.add_argument("--customer", default=f"py-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--gen", required=True, help="directory of the classes generate.py wrote")
    args = parser.parse_args()
    sys.path.insert(0, args.gen)
    print(json.dumps(run(args.ledger, args.standing, args.customer), indent=2))


if __name__ == "__main__":
    main()
