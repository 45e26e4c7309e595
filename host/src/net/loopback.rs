//! A connection over loopback between two endpoints under a fresh cluster CA, with the
//! cluster's mutual TLS: what benchmarks and tests of the data plane run over.

use super::pki::{self, COORDINATOR_NAME, ClusterCa};

/// Both ends of one connection, and their endpoints (which live as long as this does).
pub struct Loopback {
    /// The connecting side, and the side that accepted.
    pub client: quinn::Connection,
    pub server: quinn::Connection,
    endpoints: [quinn::Endpoint; 2],
}

impl Loopback {
    /// Connects two new endpoints on 127.0.0.1 (within a tokio runtime).
    pub async fn connect() -> Result<Loopback, String> {
        let fail = |e: &dyn std::fmt::Display| format!("loopback connection: {e}");
        let ca = ClusterCa::generate().map_err(|e| fail(&e))?;
        let server_id = ca.issue(COORDINATOR_NAME).map_err(|e| fail(&e))?;
        let client_id = ca.issue("worker-loopback").map_err(|e| fail(&e))?;
        let any = "127.0.0.1:0".parse().expect("a socket address");
        let config = pki::server_config(&server_id, false).map_err(|e| fail(&e))?;
        let server = quinn::Endpoint::server(config, any).map_err(|e| fail(&e))?;
        let at = server.local_addr().map_err(|e| fail(&e))?;
        let mut client = quinn::Endpoint::client(any).map_err(|e| fail(&e))?;
        client.set_default_client_config(pki::client_config(&client_id).map_err(|e| fail(&e))?);
        let accepting = server.clone();
        let accepted = tokio::spawn(async move {
            let incoming = accepting.accept().await?;
            incoming.await.ok()
        });
        let connection = client
            .connect(at, COORDINATOR_NAME)
            .map_err(|e| fail(&e))?
            .await
            .map_err(|e| fail(&e))?;
        let served = accepted
            .await
            .map_err(|e| fail(&e))?
            .ok_or_else(|| fail(&"the server did not accept"))?;
        Ok(Loopback {
            client: connection,
            server: served,
            endpoints: [client, server],
        })
    }

    /// Closes the connection and both endpoints.
    pub fn close(&self) {
        self.client.close(0u32.into(), b"done");
        for e in &self.endpoints {
            e.close(0u32.into(), b"done");
        }
    }
}
