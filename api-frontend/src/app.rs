//! Everything a request handler needs, built once from the settings.

use joblet_ipc_proto::settings::FrontendSettings;

use crate::gate::Gate;
use crate::jobs::convert::JobDefaults;
use crate::jobs::tracker::Tracker;
use crate::links::logs::LogsClient;
use crate::links::spawner::SpawnerLink;
use crate::links::state::StateClient;
use crate::scheduler::Scheduler;
use crate::sealing::{SealError, Sealer};
use crate::uploads::UploadStore;

pub struct App {
    pub node_id: String,
    pub defaults: JobDefaults,
    pub stop_grace_ms: u32,
    pub max_concurrent_jobs: u32,
    pub gate: Gate,
    pub state: StateClient,
    pub spawner: SpawnerLink,
    pub logs: LogsClient,
    pub tracker: Tracker,
    /// Largest total upload per job, bytes.
    pub max_upload_bytes: u64,
    /// Staged uploads, `data_dir/uploads`.
    pub uploads: UploadStore,
    /// Seals the secrets of scheduled jobs (key in `data_dir/sealing.key`).
    pub sealer: Sealer,
    pub scheduler: Scheduler,
}

/// Why the application state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot prepare the key that seals scheduled jobs' secrets: {0}")]
    Sealing(#[from] SealError),
}

impl App {
    pub fn new(settings: &FrontendSettings, gate: Gate) -> Result<App, AppError> {
        let uploads = UploadStore::new(&settings.data_dir);
        Ok(App {
            node_id: settings.node_id.clone(),
            defaults: JobDefaults {
                limits: settings.defaults.clone(),
                timeout_ms: settings.default_timeout_ms,
            },
            stop_grace_ms: settings.stop_grace_ms,
            max_concurrent_jobs: settings.max_concurrent_jobs,
            gate,
            state: StateClient::new(settings.state_socket.clone()),
            spawner: SpawnerLink::new(settings.spawner_socket.clone()),
            logs: LogsClient::new(settings.logs_socket.clone()),
            tracker: Tracker::default(),
            max_upload_bytes: settings.max_upload_bytes,
            sealer: Sealer::open(&settings.data_dir)?,
            scheduler: Scheduler::new(&uploads),
            uploads,
        })
    }
}
