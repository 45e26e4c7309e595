//! The HTTP side of every process: `/metrics` (Prometheus text), served by axum on a thread
//! of its own so that no job's work waits for a scrape.

use std::net::SocketAddr;
use std::sync::Arc;

/// Serves `/metrics` at `addr` on a thread of its own, with the text `body` gives at each
/// request. Returns the address it listens on.
pub fn serve(
    addr: SocketAddr,
    body: impl Fn() -> String + Send + Sync + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let at = listener.local_addr()?;
    let body = Arc::new(body);
    std::thread::Builder::new()
        .name("weir-metrics".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return tracing::error!("/metrics cannot start: {e}"),
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!("/metrics cannot listen: {e}"),
                };
                let app = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let body = body.clone();
                        async move { ([("content-type", "text/plain; version=0.0.4")], body()) }
                    }),
                );
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!("/metrics stopped: {e}");
                }
            });
        })?;
    Ok(at)
}
