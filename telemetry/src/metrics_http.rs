//! The `GET /metrics` server every binary runs on `--metrics-listen`: the OpenMetrics text that
//! the binary's own `encode` function produces at each scrape. Also the `grpc_code` label's
//! spelling, shared by every gRPC metric.

use std::future::Future;
use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

/// The content type of the OpenMetrics text exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Produces the exposition at each scrape.
pub type Encode = Arc<dyn Fn() -> Result<String, std::fmt::Error> + Send + Sync>;

/// Serves `GET /metrics` on `listener` until `shutdown` completes. A failed encoding answers 500.
pub async fn serve(
    listener: tokio::net::TcpListener,
    encode: Encode,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let encode = Arc::clone(&encode);
            async move {
                match encode() {
                    Ok(body) => (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
                        body,
                    )
                        .into_response(),
                    Err(_) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "failed to encode metrics\n",
                    )
                        .into_response(),
                }
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A status code as grpc-go's `codes.Code.String()` spells it (`OK`, `InvalidArgument`,
/// `Canceled`, …): the customary value of the `grpc_code` label.
pub fn grpc_code_label(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("writes");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("reads");
        response
    }

    #[tokio::test]
    async fn serves_what_encode_returns_and_500_when_it_fails() {
        for (encode, status, body) in [
            (
                Arc::new(|| Ok("up 1\n# EOF\n".to_owned())) as Encode,
                "HTTP/1.1 200",
                "up 1\n# EOF\n",
            ),
            (
                Arc::new(|| Err(std::fmt::Error)) as Encode,
                "HTTP/1.1 500",
                "failed to encode metrics",
            ),
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("binds");
            let addr = listener.local_addr().expect("address");
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(serve(listener, encode, async {
                let _ = stopped.await;
            }));
            let response = get(addr, "/metrics").await;
            assert!(response.starts_with(status), "{response}");
            assert!(response.contains(body), "{response}");
            if status.ends_with("200") {
                assert!(response.contains(OPENMETRICS_CONTENT_TYPE), "{response}");
            }
            assert!(get(addr, "/other").await.starts_with("HTTP/1.1 404"));
            let _ = stop.send(());
            server.await.expect("joins").expect("serves");
        }
    }
}
