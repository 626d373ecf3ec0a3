//! The services beyond jobs and monitoring (networks, volumes, runtimes). None is
//! implemented yet: every method is authorised and audited like any other, then answers
//! UNIMPLEMENTED naming what is missing, so no client mistakes an absent feature for a
//! success.

use std::sync::Arc;

use joblet_api_proto::network_service_server::NetworkService;
use joblet_api_proto::runtime_service_server::RuntimeService;
use joblet_api_proto::volume_service_server::VolumeService;
use joblet_api_proto::*;
use tonic::{Request, Response, Status};

use crate::gate::{Gate, not_implemented};
use crate::rbac::Rpc;

const NO_NETWORKS: &str = "custom networks are not implemented yet";
const NO_VOLUMES: &str = "volumes are not implemented yet";
const NO_RUNTIMES: &str = "runtimes are not implemented yet";

type Stream<T> = tokio_stream::Empty<Result<T, Status>>;

/// One value serving all three services; only the gate is needed.
#[derive(Clone)]
pub struct Unimplemented {
    gate: Arc<Gate>,
}

impl Unimplemented {
    pub fn new(gate: Gate) -> Unimplemented {
        Unimplemented {
            gate: Arc::new(gate),
        }
    }

    fn refuse<T>(&self, req: &Request<T>, rpc: Rpc, missing: &str) -> Status {
        not_implemented(&self.gate, req, rpc, missing)
    }
}

#[tonic::async_trait]
impl NetworkService for Unimplemented {
    async fn create_network(
        &self,
        req: Request<CreateNetworkRequest>,
    ) -> Result<Response<CreateNetworkResponse>, Status> {
        Err(self.refuse(&req, Rpc::CreateNetwork, NO_NETWORKS))
    }

    async fn list_networks(
        &self,
        req: Request<EmptyRequest>,
    ) -> Result<Response<Networks>, Status> {
        Err(self.refuse(&req, Rpc::ListNetworks, NO_NETWORKS))
    }

    async fn remove_network(
        &self,
        req: Request<RemoveNetworkRequest>,
    ) -> Result<Response<RemoveNetworkResponse>, Status> {
        Err(self.refuse(&req, Rpc::RemoveNetwork, NO_NETWORKS))
    }
}

#[tonic::async_trait]
impl VolumeService for Unimplemented {
    async fn create_volume(
        &self,
        req: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        Err(self.refuse(&req, Rpc::CreateVolume, NO_VOLUMES))
    }

    async fn list_volumes(&self, req: Request<EmptyRequest>) -> Result<Response<Volumes>, Status> {
        Err(self.refuse(&req, Rpc::ListVolumes, NO_VOLUMES))
    }

    async fn remove_volume(
        &self,
        req: Request<RemoveVolumeRequest>,
    ) -> Result<Response<RemoveVolumeResponse>, Status> {
        Err(self.refuse(&req, Rpc::RemoveVolume, NO_VOLUMES))
    }
}

#[tonic::async_trait]
impl RuntimeService for Unimplemented {
    async fn list_runtimes(
        &self,
        req: Request<EmptyRequest>,
    ) -> Result<Response<ListRuntimesResponse>, Status> {
        Err(self.refuse(&req, Rpc::ListRuntimes, NO_RUNTIMES))
    }

    async fn get_runtime_info(
        &self,
        req: Request<GetRuntimeInfoRequest>,
    ) -> Result<Response<GetRuntimeInfoResponse>, Status> {
        Err(self.refuse(&req, Rpc::GetRuntimeInfo, NO_RUNTIMES))
    }

    async fn test_runtime(
        &self,
        req: Request<TestRuntimeRequest>,
    ) -> Result<Response<TestRuntimeResponse>, Status> {
        Err(self.refuse(&req, Rpc::TestRuntime, NO_RUNTIMES))
    }

    async fn remove_runtime(
        &self,
        req: Request<RemoveRuntimeRequest>,
    ) -> Result<Response<RemoveRuntimeResponse>, Status> {
        Err(self.refuse(&req, Rpc::RemoveRuntime, NO_RUNTIMES))
    }

    type BuildRuntimeStream = Stream<BuildRuntimeProgress>;

    async fn build_runtime(
        &self,
        req: Request<BuildRuntimeRequest>,
    ) -> Result<Response<Self::BuildRuntimeStream>, Status> {
        Err(self.refuse(&req, Rpc::BuildRuntime, NO_RUNTIMES))
    }

    async fn validate_runtime_yaml(
        &self,
        req: Request<ValidateRuntimeYamlRequest>,
    ) -> Result<Response<ValidateRuntimeYamlResponse>, Status> {
        Err(self.refuse(&req, Rpc::ValidateRuntimeYaml, NO_RUNTIMES))
    }
}
