"""Generates the Python protobuf and gRPC classes of Covenant's API from `proto/`.

    python generate.py --out DIR

writes `DIR/covenant/v1/*_pb2.py` (messages) and `*_pb2_grpc.py` (gRPC stubs), with grpcio-tools'
bundled protoc: no system protoc is needed. Put DIR on `sys.path` (the examples take `--gen DIR`).
"""

import argparse
import pathlib
import sys

from grpc_tools import protoc
import grpc_tools

PROTO_ROOT = pathlib.Path(__file__).resolve().parents[2] / "proto"


def generate(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(path.relative_to(PROTO_ROOT)) for path in PROTO_ROOT.glob("covenant/v1/*.proto"))
    if not sources:
        sys.exit(f"no .proto files under {PROTO_ROOT}")
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *sources,
        ]
    )
    if status != 0:
        sys.exit(f"protoc failed with status {status}")
    # Make the generated directories importable packages.
    for package in (out / "covenant", out / "covenant" / "v1"):
        (package / "__init__.py").touch()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=pathlib.Path, help="where to write the classes")
    generate(parser.parse_args().out)
