//! An axum app served on a loopback port from its own thread and tokio runtime, so that
//! blocking tests can use it; stopped when dropped.

use std::net::SocketAddr;
use std::thread::JoinHandle;

pub(crate) struct AxumServer {
    address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AxumServer {
    /// Serves the app `make_app` builds (inside the runtime) on `127.0.0.1`, on a thread
    /// called `name`.
    pub(crate) fn start(
        name: &str,
        worker_threads: usize,
        make_app: impl FnOnce() -> axum::Router + Send + 'static,
    ) -> AxumServer {
        // Bound here, before the thread starts, so the port is known and connections queue
        // until the server accepts them.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        listener
            .set_nonblocking(true)
            .expect("a listener can be made non-blocking for tokio");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (shutdown, shutdown_requested) = tokio::sync::oneshot::channel::<()>();
        let label = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(worker_threads)
                    .thread_name(format!("{label}-worker"))
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for a test server");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("tokio adopts the bound listener");
                    let app = make_app();
                    tokio::spawn(async move {
                        if let Err(error) = axum::serve(listener, app).await {
                            eprintln!("{label} stopped serving: {error}");
                        }
                    });
                    // Not a graceful shutdown: a test may leave a request hanging, and
                    // dropping the runtime cancels it.
                    let _ = shutdown_requested.await;
                });
                runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            })
            .expect("the OS starts a thread");
        AxumServer {
            address,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for AxumServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
