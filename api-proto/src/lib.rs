//! Joblet's public gRPC contract, package `joblet`: the messages and the tonic client and
//! server code for `JobService`, `NetworkService`, `VolumeService`, `MonitoringService` and
//! `RuntimeService`, generated from `proto/joblet.proto`.

#![forbid(unsafe_code)]
#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

/// Generated code for package `joblet`.
pub mod joblet {
    tonic::include_proto!("joblet");
}

pub use joblet::*;

pub mod metadata;

/// The encoded `FileDescriptorSet` of `proto/joblet.proto`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/joblet_descriptor.bin"));
