//! Finding out why a connection or a call broke, from the error's source chain, so the
//! user reads "connection refused" or "the server refused our certificate" rather than
//! "transport error".

use std::error::Error;
use std::io;

/// The root cause of a transport failure, in words for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// We did not accept the server's certificate (wrong CA, wrong name, expired).
    ServerCertRejected(String),
    /// The server aborted the handshake with an alert: usually our client certificate.
    RefusedByServer(String),
    /// Another TLS failure.
    Tls(String),
    /// The network: refused, unreachable, timed out, name lookup.
    Network(String),
}

impl Cause {
    pub fn is_tls(&self) -> bool {
        !matches!(self, Cause::Network(_))
    }

    pub fn detail(&self) -> &str {
        match self {
            Cause::ServerCertRejected(d)
            | Cause::RefusedByServer(d)
            | Cause::Tls(d)
            | Cause::Network(d) => d,
        }
    }

    /// What to check, for TLS causes.
    pub fn hint(&self) -> &'static str {
        match self {
            Cause::ServerCertRejected(_) => {
                "is the CA right, and is the server certificate valid for the name 'joblet'?"
            }
            Cause::RefusedByServer(_) => {
                "the server refused our client certificate: is it signed by the server's CA \
                 and still valid?"
            }
            Cause::Tls(_) => "is the CA right?",
            Cause::Network(_) => "is the server running and the address right?",
        }
    }
}

/// Walks `err`'s sources (looking inside `io::Error` wrappers too, whose `source()` skips the
/// wrapped error) and returns the most telling cause: TLS before network.
pub fn find(err: &(dyn Error + 'static)) -> Option<Cause> {
    let mut network = None;
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls_cause(tls));
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(inner) = io.get_ref()
                && let Some(cause) = find(inner)
            {
                if cause.is_tls() {
                    return Some(cause);
                }
                network.get_or_insert(cause);
            }
            network.get_or_insert(Cause::Network(describe_io(io)));
        }
        current = e.source();
    }
    network.or_else(|| timeout_cause(err))
}

fn tls_cause(e: &rustls::Error) -> Cause {
    match e {
        rustls::Error::InvalidCertificate(_) => Cause::ServerCertRejected(e.to_string()),
        rustls::Error::AlertReceived(_) => Cause::RefusedByServer(e.to_string()),
        _ => Cause::Tls(e.to_string()),
    }
}

/// tonic reports its own connect and handshake timeouts as plain errors with no io source.
fn timeout_cause(err: &(dyn Error + 'static)) -> Option<Cause> {
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("timed out") || text.contains("timeout") {
            return Some(Cause::Network("timed out".to_string()));
        }
        current = e.source();
    }
    None
}

fn describe_io(e: &io::Error) -> String {
    use io::ErrorKind::*;
    let words = match e.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset by the server",
        ConnectionAborted => "connection aborted",
        TimedOut => "timed out",
        HostUnreachable => "host unreachable",
        NetworkUnreachable => "network unreachable",
        AddrNotAvailable => "address not available",
        BrokenPipe | UnexpectedEof => "the server closed the connection",
        _ => return e.to_string(),
    };
    words.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("transport error")]
    struct Outer(#[source] io::Error);

    #[test]
    fn refused_connection_is_a_network_cause() {
        let e = Outer(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(
            find(&e),
            Some(Cause::Network("connection refused".to_string()))
        );
    }

    #[test]
    fn tls_error_wrapped_in_io_error_is_found() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = Outer(io::Error::new(io::ErrorKind::InvalidData, tls));
        let cause = find(&e).unwrap();
        assert!(matches!(cause, Cause::ServerCertRejected(_)), "{cause:?}");
        assert!(cause.detail().contains("UnknownIssuer"), "{cause:?}");
        assert!(cause.hint().contains("CA"));

        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let e = Outer(io::Error::new(io::ErrorKind::InvalidData, alert));
        assert!(matches!(find(&e), Some(Cause::RefusedByServer(_))));
    }

    #[test]
    fn unrelated_errors_have_no_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("something else")]
        struct Plain;
        assert_eq!(find(&Plain), None);
    }

    #[test]
    fn timeouts_without_io_source_are_network_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("timeout expired")]
        struct Expired;
        assert_eq!(find(&Expired), Some(Cause::Network("timed out".into())));
    }
}
