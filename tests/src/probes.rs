//! What a test asks a running service with, besides its gRPC API: its metrics, and the whole
//! story of a failed call.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `GET /metrics` on `addr` (HTTP/1.1, `Connection: close`): the whole response, headers
/// included.
pub async fn scrape(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("writing to {addr}: {e}"));
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .unwrap_or_else(|e| panic!("reading from {addr}: {e}"));
    response
}

/// `<code>: <message>: <source>: …`: a transport failure's cause (a certificate refused, say)
/// is in the status's sources, not in its message.
pub fn describe(status: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
