//! The mutual-TLS gRPC connection to one node, and what a failed call means to the user.

use std::time::Duration;

use joblet_api_proto::job_service_client::JobServiceClient;
use joblet_api_proto::monitoring_service_client::MonitoringServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::cause::{self, Cause};
use crate::config::Target;
use crate::error::{CliError, Exit};
use crate::probe;
use crate::transport::{CountingConnector, SentBytes};

/// The name the server certificate must carry; Joblet's own clients pin it the same way,
/// whatever address they dial.
pub const SERVER_NAME: &str = "joblet";
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest HTTP/2 frame the server may send us (the protocol's default is 16 KiB). The
/// server's HTTP/2 layer flushes its socket after every data frame, so with the default a
/// followed log cost the server a TLS record and a system call per 16 KiB.
const MAX_FRAME_SIZE: u32 = 1 << 20;
/// Job lists and status replies can be large; uploads travel inline in RunJob.
const MAX_DECODE_BYTES: usize = 64 * 1024 * 1024;
const MAX_ENCODE_BYTES: usize = 128 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("config: node '{node}': address '{address}' is not usable: {reason}")]
    BadAddress {
        node: String,
        address: String,
        reason: String,
    },
    #[error("node '{node}': cannot set up TLS from the config's cert, key and ca: {reason}")]
    TlsSetup { node: String, reason: String },
    #[error("cannot reach node {node} at {address}: {reason}")]
    Unreachable {
        node: String,
        address: String,
        reason: String,
    },
    #[error("TLS handshake with node {node} at {address} failed: {reason} ({hint})")]
    Handshake {
        node: String,
        address: String,
        reason: String,
        hint: &'static str,
    },
}

impl ConnectError {
    pub fn exit(&self) -> Exit {
        match self {
            ConnectError::BadAddress { .. } => Exit::Generic,
            ConnectError::TlsSetup { .. } | ConnectError::Handshake { .. } => Exit::Tls,
            ConnectError::Unreachable { .. } => Exit::Unavailable,
        }
    }

    fn from_cause(node: &str, address: &str, cause: Cause) -> Self {
        if cause.is_tls() {
            ConnectError::Handshake {
                node: node.to_string(),
                address: address.to_string(),
                reason: cause.detail().to_string(),
                hint: cause.hint(),
            }
        } else {
            ConnectError::Unreachable {
                node: node.to_string(),
                address: address.to_string(),
                reason: cause.detail().to_string(),
            }
        }
    }
}

/// An open connection to a node.
#[derive(Debug, Clone)]
pub struct Connection {
    channel: Channel,
    target: Target,
    sent: SentBytes,
}

/// `host:port` (Joblet's form) or `https://host:port`; plain-text schemes are refused.
pub fn endpoint_uri(address: &str) -> Result<String, String> {
    if let Some((scheme, _)) = address.split_once("://") {
        if scheme.eq_ignore_ascii_case("https") {
            return Ok(address.to_string());
        }
        return Err(format!(
            "scheme '{scheme}' is not supported: rnx only connects over TLS (use host:port)"
        ));
    }
    Ok(format!("https://{address}"))
}

fn tls_config(target: &Target) -> ClientTlsConfig {
    // Only the node's own CA is trusted: no system roots.
    ClientTlsConfig::new()
        .domain_name(SERVER_NAME)
        .ca_certificate(Certificate::from_pem(&target.ca_pem))
        .identity(Identity::from_pem(&target.cert_pem, &target.key_pem))
        .timeout(CONNECT_TIMEOUT)
}

fn endpoint(target: &Target) -> Result<Endpoint, ConnectError> {
    let bad_address = |reason: String| ConnectError::BadAddress {
        node: target.node.clone(),
        address: target.address.clone(),
        reason,
    };
    let uri = endpoint_uri(&target.address).map_err(bad_address)?;
    let endpoint = Endpoint::from_shared(uri).map_err(|e| bad_address(e.to_string()))?;
    endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .max_frame_size(MAX_FRAME_SIZE)
        .tls_config(tls_config(target))
        .map_err(|e| ConnectError::TlsSetup {
            node: target.node.clone(),
            reason: error_chain(&e),
        })
}

/// Connects now (not lazily) so that an unreachable node or a bad certificate is reported
/// as such, before any request is sent.
pub async fn connect(target: &Target) -> Result<Connection, ConnectError> {
    let sent = SentBytes::default();
    let channel = endpoint(target)?
        .connect_with_connector(CountingConnector::new(sent.clone()))
        .await
        .map_err(|e| match cause::find(&e) {
            Some(cause) => ConnectError::from_cause(&target.node, &target.address, cause),
            None => ConnectError::Unreachable {
                node: target.node.clone(),
                address: target.address.clone(),
                reason: error_chain(&e),
            },
        })?;
    Ok(Connection {
        channel,
        target: target.clone(),
        sent,
    })
}

/// "a: b: c" from an error and its sources, without repeating a message.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

impl Connection {
    /// Bytes written to the node so far (TLS records included): progress of a large send.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.get()
    }

    pub fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_DECODE_BYTES)
            .max_encoding_message_size(MAX_ENCODE_BYTES)
    }

    pub fn monitoring(&self) -> MonitoringServiceClient<Channel> {
        MonitoringServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_DECODE_BYTES)
    }

    /// Awaits a call, turning a failure into the user-facing error.
    pub async fn call<T>(
        &self,
        method: &str,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<tonic::Response<T>, CliError> {
        match call.await {
            Ok(response) => Ok(response),
            Err(status) => Err(self.fail(method, status).await),
        }
    }

    /// The user-facing error for a failed call of `method`. When the connection itself
    /// broke, asks the server once more whether it refuses our certificate (see `probe`).
    pub async fn fail(&self, method: &str, status: Status) -> CliError {
        let (node, address) = (&self.target.node, &self.target.address);
        if is_broken_connection(&status)
            && cause::find(&status).is_none_or(|c| !c.is_tls())
            && let Some(refusal) = probe::tls_refusal(&self.target).await
        {
            return ConnectError::from_cause(node, address, refusal).into();
        }
        rpc_error(node, address, method, &status)
    }
}

/// A status made by our side of the transport (it has a source error), not one the server
/// sent: the connection broke.
fn is_broken_connection(status: &Status) -> bool {
    use std::error::Error;
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
    ) && status.source().is_some()
}

/// Maps a failed call to an exit code and a message naming what was wrong. The server's
/// own message is kept: it names the job, the role or the field.
pub fn rpc_error(node: &str, address: &str, method: &str, status: &Status) -> CliError {
    // A broken connection (TLS alert after the handshake, reset) arrives as a status whose
    // source chain holds the real reason.
    if is_broken_connection(status) {
        let cause = cause::find(status).unwrap_or_else(|| {
            Cause::Network(format!("the connection broke: {}", status.message()))
        });
        return ConnectError::from_cause(node, address, cause).into();
    }
    let message = status.message().trim();
    let exit = exit_for(status.code());
    let message = match status.code() {
        Code::NotFound if !message.is_empty() => message.to_string(),
        Code::NotFound => format!("{method}: not found"),
        Code::PermissionDenied
            if message
                .to_ascii_lowercase()
                .starts_with("permission denied") =>
        {
            message.to_string()
        }
        Code::PermissionDenied => format!("permission denied: {method}: {message}"),
        Code::Unauthenticated => format!(
            "{method}: the server did not accept our client certificate: {message} \
             (is it signed by the server's CA?)"
        ),
        Code::Unavailable => format!("node {node} at {address} is unavailable: {message}"),
        Code::DeadlineExceeded => format!("{method}: node {node} at {address} timed out"),
        Code::Unimplemented => format!("{method}: not supported by this server: {message}"),
        _ if message.is_empty() => format!("{method} failed ({})", status.code().description()),
        _ => format!("{method}: {message}"),
    };
    CliError::Rpc { exit, message }
}

/// The exit code for each gRPC status code.
pub fn exit_for(code: Code) -> Exit {
    match code {
        Code::NotFound => Exit::NotFound,
        Code::PermissionDenied => Exit::PermissionDenied,
        Code::Unauthenticated => Exit::Tls,
        Code::Unavailable | Code::DeadlineExceeded => Exit::Unavailable,
        Code::InvalidArgument | Code::OutOfRange => Exit::InvalidArgument,
        _ => Exit::Generic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_documented_exit_codes() {
        assert_eq!(exit_for(Code::NotFound), Exit::NotFound);
        assert_eq!(exit_for(Code::PermissionDenied), Exit::PermissionDenied);
        assert_eq!(exit_for(Code::Unavailable), Exit::Unavailable);
        assert_eq!(exit_for(Code::DeadlineExceeded), Exit::Unavailable);
        assert_eq!(exit_for(Code::Unauthenticated), Exit::Tls);
        assert_eq!(exit_for(Code::InvalidArgument), Exit::InvalidArgument);
        assert_eq!(exit_for(Code::OutOfRange), Exit::InvalidArgument);
        for code in [
            Code::FailedPrecondition,
            Code::Unimplemented,
            Code::Internal,
            Code::ResourceExhausted,
            Code::Unknown,
            Code::AlreadyExists,
        ] {
            assert_eq!(exit_for(code), Exit::Generic, "{code:?}");
        }
    }

    fn msg(code: Code, text: &str) -> (Exit, String) {
        let e = rpc_error(
            "default",
            "127.0.0.1:50051",
            "RunJob",
            &Status::new(code, text),
        );
        (e.exit(), e.to_string())
    }

    #[test]
    fn server_messages_are_kept_and_completed() {
        assert_eq!(
            msg(Code::NotFound, "job 1a2b not found"),
            (Exit::NotFound, "job 1a2b not found".into())
        );
        assert_eq!(
            msg(
                Code::PermissionDenied,
                "permission denied: role viewer may not RunJob"
            ),
            (
                Exit::PermissionDenied,
                "permission denied: role viewer may not RunJob".into()
            )
        );
        assert_eq!(
            msg(Code::PermissionDenied, "role viewer"),
            (
                Exit::PermissionDenied,
                "permission denied: RunJob: role viewer".into()
            )
        );
        assert_eq!(
            msg(Code::InvalidArgument, "invalid max_cpu: too large"),
            (
                Exit::InvalidArgument,
                "RunJob: invalid max_cpu: too large".into()
            )
        );
        let (exit, text) = msg(Code::Unavailable, "spawner is restarting, retry");
        assert_eq!(exit, Exit::Unavailable);
        assert!(text.contains("127.0.0.1:50051"), "{text}");
        assert!(text.contains("spawner is restarting"), "{text}");
        let (exit, text) = msg(Code::FailedPrecondition, "");
        assert_eq!(exit, Exit::Generic);
        assert!(text.starts_with("RunJob failed"), "{text}");
    }

    #[test]
    fn uris_are_https_only() {
        assert_eq!(
            endpoint_uri("127.0.0.1:50051").unwrap(),
            "https://127.0.0.1:50051"
        );
        assert_eq!(endpoint_uri("https://h:1").unwrap(), "https://h:1");
        assert!(endpoint_uri("http://h:1").unwrap_err().contains("TLS"));
    }

    #[test]
    fn chains_are_joined_without_repeats() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: inner")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("inner")]
        struct Inner;
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner");
    }
}
