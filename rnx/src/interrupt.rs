//! Ctrl-C while following a stream: stop following, leave the job alone.

/// Resolves on Ctrl-C; never, if the handler cannot be installed (then Ctrl-C simply ends
/// the process, which is also fine).
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
