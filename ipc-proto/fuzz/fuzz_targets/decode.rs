//! Feeds arbitrary frames to every decoder of every channel. A decoder must return a value
//! or an error; a panic, abort or runaway allocation is a bug.

#![no_main]

use joblet_ipc_proto::channel::logs::{FromPersistLogs, ToPersistLogs};
use joblet_ipc_proto::channel::output::{FromPersistOutput, ToPersistOutput};
use joblet_ipc_proto::channel::spawner::{FromSpawner, ToSpawner};
use joblet_ipc_proto::channel::state::{FromState, ToState};
use joblet_ipc_proto::codec::decode;
use joblet_ipc_proto::handshake::{Hello, HelloReply};
use joblet_ipc_proto::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let _ = decode::<Hello>(frame);
    let _ = decode::<HelloReply>(frame);
    if let Ok(msg) = decode::<ToSpawner>(frame) {
        // What the spawner does next with a decoded request: validate it.
        if let joblet_ipc_proto::channel::spawner::SpawnerRequest::StartJob { launch, .. } =
            msg.request
        {
            let _ = validate::launch(&launch);
        }
    }
    let _ = decode::<FromSpawner>(frame);
    let _ = decode::<ToPersistOutput>(frame);
    let _ = decode::<FromPersistOutput>(frame);
    let _ = decode::<ToPersistLogs>(frame);
    let _ = decode::<FromPersistLogs>(frame);
    let _ = decode::<ToState>(frame);
    let _ = decode::<FromState>(frame);
});
