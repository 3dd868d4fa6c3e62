//! The request size limit, enforced on the wire.
//!
//! tonic rejects an over-limit message with `OUT_OF_RANGE`; the contract (and grpc-go, grpc-java,
//! grpc-core) say `RESOURCE_EXHAUSTED`. This body wrapper reads the 5-byte gRPC message prefixes
//! as the request streams through and fails the body with `RESOURCE_EXHAUSTED` as soon as a
//! prefix announces more than the limit, before tonic looks at it and before the message is
//! buffered.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Status;

/// Length of a gRPC message prefix: compressed flag (1 byte) and length (4 bytes, big endian).
const PREFIX_LEN: usize = 5;

/// A request body whose gRPC messages may not exceed `limit` bytes.
#[derive(Debug)]
pub struct LimitedBody<B> {
    inner: B,
    limit: usize,
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    remaining: u64,
    failed: bool,
}

impl<B> LimitedBody<B> {
    pub fn new(inner: B, limit: usize) -> Self {
        LimitedBody {
            inner,
            limit,
            prefix: [0; PREFIX_LEN],
            prefix_len: 0,
            remaining: 0,
            failed: false,
        }
    }

    /// Follows the message framing through `data`.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let skip =
                    usize::try_from(self.remaining).map_or(data.len(), |r| r.min(data.len()));
                self.remaining -= skip as u64;
                data = &data[skip..];
                continue;
            }
            let take = (PREFIX_LEN - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&data[..take]);
            self.prefix_len += take;
            data = &data[take..];
            if self.prefix_len == PREFIX_LEN {
                self.prefix_len = 0;
                let [_, a, b, c, d] = self.prefix;
                let len = u32::from_be_bytes([a, b, c, d]);
                if usize::try_from(len).map_or(true, |len| len > self.limit) {
                    return Err(Status::resource_exhausted(format!(
                        "request message of {len} bytes is larger than the limit of {} bytes",
                        self.limit
                    )));
                }
                self.remaining = u64::from(len);
            }
        }
        Ok(())
    }
}

impl<B> HttpBody for LimitedBody<B>
where
    B: HttpBody + Unpin,
    B::Data: AsRef<[u8]>,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Data = B::Data;
    type Error = tonic::codegen::StdError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Err(status) = this.scan(data.as_ref())
                {
                    this.failed = true;
                    return Poll::Ready(Some(Err(Box::new(status))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&len.to_be_bytes());
        out.extend(std::iter::repeat_n(7u8, len as usize));
        out
    }

    fn scan_in_chunks(limit: usize, bytes: &[u8], chunk: usize) -> Result<(), Status> {
        let mut body = LimitedBody::new((), limit);
        bytes.chunks(chunk).try_for_each(|c| body.scan(c))
    }

    #[test]
    fn accepts_messages_up_to_the_limit_however_split() {
        let mut bytes = message(10);
        bytes.extend(message(0));
        bytes.extend(message(10));
        for chunk in 1..bytes.len() {
            assert!(scan_in_chunks(10, &bytes, chunk).is_ok(), "chunk {chunk}");
        }
    }

    #[test]
    fn rejects_a_prefix_above_the_limit_however_split() {
        let mut bytes = message(3);
        bytes.extend(message(11));
        for chunk in 1..bytes.len() {
            let status = scan_in_chunks(10, &bytes, chunk).expect_err("11 > 10");
            assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        }
    }
}
