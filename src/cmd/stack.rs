//! A runtime and, optionally, a local controller steering it, in this process: what `dyce up`
//! runs, and what `dyce demo` starts for each of its runs. One cancellation token stops both.

use std::time::Instant;

use anyhow::{Context, Result};
use dyce_control_core::policy::PolicyDocument;
use dyce_controller::local::{run_local, LocalConfig, LocalError};
use dyce_runtime::model::Bundle;
use dyce_runtime::server::Server;
use dyce_runtime::service::{ServeConfig, ServeError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where a stack listens (bound by the caller: a command's addresses, or port 0).
pub struct Listeners {
    /// The runtime's data port.
    pub data: TcpListener,
    /// The runtime's admin port (loopback: the stack sets no token).
    pub admin: TcpListener,
    /// The runtime's gRPC port, when it serves one.
    pub grpc: Option<TcpListener>,
    /// The controller's endpoints, when a controller runs.
    pub controller: Option<TcpListener>,
}

/// A running stack.
pub struct Stack {
    /// Data port base URL.
    pub data_url: String,
    /// Admin port base URL.
    pub admin_url: String,
    /// The controller's base URL and the instant its clock (decision `at`) counts from.
    pub controller: Option<(String, Instant)>,
    stop: CancellationToken,
    runtime: JoinHandle<Result<(), ServeError>>,
    controller_task: Option<JoinHandle<Result<(), LocalError>>>,
}

impl Stack {
    /// Starts a runtime on `bundle` and, with `policy` and a controller listener, a controller
    /// steering it; both stop when `stop` is cancelled. Prints the runtime's address line, as
    /// `dyce serve` does. Call it inside a tokio runtime: the servers run as its tasks.
    pub fn start(
        bundle: Bundle,
        serve: &ServeConfig,
        policy: Option<PolicyDocument>,
        listeners: Listeners,
        stop: CancellationToken,
    ) -> Result<Stack> {
        let mut server = Server::new(bundle, serve, listeners.data, listeners.admin)?;
        if let Some(grpc) = listeners.grpc {
            server = server.with_grpc(grpc);
        }
        let (data, admin) = server.local_addrs()?;
        let grpc = server.grpc_addr()?.map(|g| g.to_string());
        println!(
            "{}",
            serde_json::json!({"data": data.to_string(), "admin": admin.to_string(), "grpc": grpc})
        );
        let (data_url, admin_url) = (format!("http://{data}"), format!("http://{admin}"));
        let runtime = tokio::spawn(server.run(stop.clone()));
        let (controller, controller_task) = match (policy, listeners.controller) {
            (Some(policy), Some(listener)) => {
                let url = format!("http://{}", listener.local_addr()?);
                let cfg = LocalConfig {
                    policy,
                    runtimes: vec![admin_url.clone()],
                    admin_token: None,
                    dry_run: false,
                    prometheus: None,
                };
                // The controller's clock starts when its task first runs, microseconds after
                // this: decisions are placed on the load's time axis from here.
                let started = Instant::now();
                (Some((url, started)), Some(tokio::spawn(run_local(cfg, listener, stop.clone()))))
            }
            _ => (None, None),
        };
        Ok(Stack { data_url, admin_url, controller, stop, runtime, controller_task })
    }

    /// Stops the controller and the runtime (which finishes in-flight requests) and waits.
    pub async fn stop(self) -> Result<()> {
        self.stop.cancel();
        self.join().await
    }

    /// Waits until the controller and the runtime have stopped (once the token is cancelled).
    pub async fn join(self) -> Result<()> {
        if let Some(c) = self.controller_task {
            c.await.context("controller task")??;
        }
        self.runtime.await.context("runtime task")??;
        Ok(())
    }
}
