//! How the console is reached: HTTPS with the coordinator's own server certificate (the one
//! its gRPC port presents), or plain HTTP only when the whole coordinator runs
//! `--insecure-plaintext`. On the HTTPS port a plain-HTTP request gets a short answer saying
//! to use `https://` instead of a failed handshake.

use std::future::Future;
use std::sync::LazyLock;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

use crate::server::Transport;
use crate::tls;

/// What a plain-HTTP client of the HTTPS port reads.
static USE_HTTPS: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let body = "This flashgate console speaks HTTPS only: open https:// and this address \
                instead.\nBrowsers must trust the coordinator's CA (the ca.pem that \
                `flashgate-coordinator tls init` wrote, or your own CA's).\n";
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

/// Serves `router` on `listener` as `transport` says until `shutdown` resolves.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    transport: &Transport,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server = match transport {
        Transport::InsecurePlaintext => {
            return axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Transport::Tls(server) => server,
    };
    let mut connections = tls::incoming_web(listener, server, &USE_HTTPS);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            next = connections.next() => match next {
                Some(Ok(stream)) => stream,
                Some(Err(error)) => {
                    tracing::debug!(%error, "a console connection failed");
                    continue;
                }
                None => return Ok(()),
            },
            () = &mut shutdown => return Ok(()),
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a console connection ended with an error");
            }
        });
    }
}
