//! The settings the supervisor hands over, and the inherited listening socket they name.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use joblet_ipc_proto::settings::{self, StatedSettings};
use joblet_ipc_proto::{Channel, IpcError, inherit};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot take the settings fd {fd}: {source}")]
    TakeSettings { fd: RawFd, source: std::io::Error },
    #[error("cannot read the settings: {0}")]
    Read(IpcError),
    #[error("the settings name no listening socket for channel {}", Channel::State)]
    NoListener,
    #[error("cannot take the listening socket fd {fd}: {source}")]
    TakeListener { fd: RawFd, source: std::io::Error },
    #[error("db_path {0} must be an absolute path to a file")]
    DbPath(PathBuf),
}

/// What stated starts with.
#[derive(Debug)]
pub struct Startup {
    pub settings: StatedSettings,
    /// The listening `SOCK_SEQPACKET` socket of the state channel.
    pub listener: OwnedFd,
}

impl Startup {
    /// Descriptors this process owns and keeps; every other inherited one is closed.
    pub fn kept_fds(&self) -> [RawFd; 1] {
        [self.listener.as_raw_fd()]
    }
}

/// Reads the settings from the fd the supervisor passed, checks them, and takes the socket.
pub fn load(settings_fd: RawFd) -> Result<Startup, SettingsError> {
    let fd = inherit::take(settings_fd).map_err(|source| SettingsError::TakeSettings {
        fd: settings_fd,
        source,
    })?;
    let settings: StatedSettings = settings::read_from_fd(fd).map_err(SettingsError::Read)?;
    check(&settings)?;
    let listener_fd = settings::ipc_listener(&settings.listen, Channel::State)
        .ok_or(SettingsError::NoListener)?;
    let listener =
        inherit::take_listener(listener_fd).map_err(|source| SettingsError::TakeListener {
            fd: listener_fd,
            source,
        })?;
    Ok(Startup { settings, listener })
}

fn check(s: &StatedSettings) -> Result<(), SettingsError> {
    if !s.db_path.is_absolute() || s.db_path.file_name().is_none() {
        return Err(SettingsError::DbPath(s.db_path.clone()));
    }
    if settings::ipc_listener(&s.listen, Channel::State).is_none() {
        return Err(SettingsError::NoListener);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use joblet_ipc_proto::settings::{Listen, LogFormat, Logging};

    fn settings() -> StatedSettings {
        StatedSettings {
            logging: Logging {
                level: "info".into(),
                format: LogFormat::Text,
            },
            listen: vec![Listen::Ipc {
                channel: Channel::State,
                fd: 7,
            }],
            db_path: "/opt/joblet/state/jobs.redb".into(),
            api_uid: 1001,
        }
    }

    #[test]
    fn checks_path_and_listener() {
        assert!(check(&settings()).is_ok());
        let mut s = settings();
        s.db_path = "state/jobs.redb".into();
        assert!(matches!(check(&s), Err(SettingsError::DbPath(_))));
        let mut s = settings();
        s.db_path = "/".into();
        assert!(matches!(check(&s), Err(SettingsError::DbPath(_))));
        let mut s = settings();
        s.listen = vec![Listen::Ipc {
            channel: Channel::Logs,
            fd: 7,
        }];
        assert!(matches!(check(&s), Err(SettingsError::NoListener)));
    }
}
