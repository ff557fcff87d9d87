//! Covenant's wire types: the protobuf messages and gRPC services generated from `proto/`
//! (`covenant.v1`), and the conversions between them and the domain types.
//!
//! Conversions from the wire are `TryFrom` and name the missing or bad field; conversions to the
//! wire cannot fail.

pub mod convert;

/// The generated `covenant.v1` package.
#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub, missing_debug_implementations)]
pub mod v1 {
    tonic::include_proto!("covenant.v1");
}

/// The encoded file descriptor set of `covenant.v1`, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/covenant_descriptor.bin"));
