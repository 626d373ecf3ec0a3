//! A raw gRPC client for the suites: for requests `rnx` does not make (hostile upload paths
//! it would refuse itself, exact schedules) and methods it may not offer. It connects with
//! the credentials of an `rnx-*.yml` client config, as `rnx` does, and runs calls on its
//! own single-threaded runtime, so the blocking test code stays simple.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use joblet_api_proto::job_service_client::JobServiceClient;
use joblet_api_proto::monitoring_service_client::MonitoringServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::host;

/// The name the server certificate carries (rnx pins the same).
const SERVER_NAME: &str = "joblet";
/// Uploads travel inline in RunJob.
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

pub struct Grpc {
    rt: tokio::runtime::Runtime,
    channel: Channel,
}

impl Grpc {
    /// Connects to `address` with the cert, key and CA of the default node in `config`.
    pub fn connect(address: &str, config: &Path) -> Grpc {
        let text = std::fs::read_to_string(config).expect("read client config");
        let field = |k: &str| {
            host::yaml_string(&text, &["nodes", "default", k])
                .unwrap_or_else(|| panic!("no nodes.default.{k} in {}", config.display()))
        };
        let tls = ClientTlsConfig::new()
            .domain_name(SERVER_NAME)
            .ca_certificate(Certificate::from_pem(field("ca")))
            .identity(Identity::from_pem(field("cert"), field("key")));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let endpoint = Endpoint::from_shared(format!("https://{address}"))
            .expect("endpoint")
            .tls_config(tls)
            .expect("tls config")
            .connect_timeout(Duration::from_secs(5));
        let channel = rt
            .block_on(endpoint.connect())
            .unwrap_or_else(|e| panic!("connect to {address}: {e:?}"));
        Grpc { rt, channel }
    }

    pub fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub fn monitoring(&self) -> MonitoringServiceClient<Channel> {
        MonitoringServiceClient::new(self.channel.clone())
    }

    /// Runs one call (or any future) to completion.
    pub fn run<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}
