//! The frontend's connections to the other daemons, over ipc-proto channels:
//! stated ([`state`]), the spawner ([`spawner`]) and persistd's log reader ([`logs`]).

mod log_reader;
pub mod logs;
pub mod spawner;
pub mod state;

use std::path::Path;
use std::time::Duration;

use joblet_ipc_proto::Channel;
use joblet_ipc_proto::tokio::{Conn, connect};
use tokio::time::Instant;

use crate::errors::LinkError;

/// How long a request waits for a daemon that is down before it is answered UNAVAILABLE.
pub const PATIENCE: Duration = Duration::from_secs(3);

/// Connects to a daemon, retrying with a short backoff until `patience` runs out.
pub async fn connect_patiently(
    path: &Path,
    channel: Channel,
    daemon: &'static str,
    patience: Duration,
) -> Result<Conn, LinkError> {
    let deadline = Instant::now() + patience;
    let mut delay = Duration::from_millis(50);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let err = match tokio::time::timeout(
            left.max(Duration::from_millis(100)),
            connect(path, channel),
        )
        .await
        {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connecting timed out".to_owned(),
        };
        if Instant::now() + delay >= deadline {
            return Err(LinkError::unavailable(
                daemon,
                format!("{} ({err})", path.display()),
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}
