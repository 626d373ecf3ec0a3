//! The channels between Joblet's processes. Each has its own socket, its own allowed peer,
//! and one closed message enum per direction.
//!
//! | channel | client → server | socket |
//! |---|---|---|
//! | [`Channel::Spawner`] | api-frontend → spawner | `spawner.sock` |
//! | [`Channel::Output`]  | spawner → persistd (pipe fds) | `persistd-output.sock` |
//! | [`Channel::Logs`]    | api-frontend → persistd | `persistd.sock` |
//! | [`Channel::State`]   | api-frontend → stated | `stated.sock` |

use serde::{Deserialize, Serialize};

pub mod logs;
pub mod output;
pub mod spawner;
pub mod state;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Channel {
    Spawner,
    Output,
    Logs,
    State,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Spawner => "spawner",
            Channel::Output => "output",
            Channel::Logs => "logs",
            Channel::State => "state",
        }
    }

    /// The socket file name inside the run directory.
    pub fn socket_name(self) -> &'static str {
        match self {
            Channel::Spawner => "spawner.sock",
            Channel::Output => "persistd-output.sock",
            Channel::Logs => "persistd.sock",
            Channel::State => "stated.sock",
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
