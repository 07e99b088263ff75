//! The body of a gRPC request from a caller the server does not know yet: its
//! first message may declare at most [`STRANGER_MESSAGE_BYTES`]. tonic reserves
//! a buffer of the length a message declares before the bytes arrive, so
//! without this a caller with no token could make the server reserve 32 MiB
//! per stream with five bytes.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// The largest first message of a caller with neither a known token nor a
/// local identity (health checks, seal status, logins are far smaller).
pub const STRANGER_MESSAGE_BYTES: usize = 64 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whether the caller is one the server knows (a token it accepts), asked
/// only when a first message is over the cap: small messages cost no lookup.
pub type Known = Box<dyn FnOnce() -> bool + Send>;

/// `inner`, failing with RESOURCE_EXHAUSTED when its first message declares
/// more than `cap` bytes and the caller is not known.
pub struct Capped<B> {
    inner: B,
    cap: usize,
    known: Option<Known>,
    /// The first message's 5-byte prefix (flag, big-endian length), as seen.
    prefix: [u8; 5],
    seen: usize,
}

impl<B> Capped<B> {
    pub fn new(inner: B, cap: usize, known: Option<Known>) -> Self {
        Capped {
            inner,
            cap,
            known,
            prefix: [0; 5],
            seen: 0,
        }
    }

    /// Takes in the start of the body; `Err` once the declared length is known
    /// to be over the cap.
    fn inspect(&mut self, data: &[u8]) -> Result<(), BoxError> {
        if self.seen == self.prefix.len() {
            return Ok(());
        }
        for byte in data.iter().take(self.prefix.len() - self.seen) {
            self.prefix[self.seen] = *byte;
            self.seen += 1;
        }
        if self.seen < self.prefix.len() {
            return Ok(());
        }
        let declared = u32::from_be_bytes([
            self.prefix[1],
            self.prefix[2],
            self.prefix[3],
            self.prefix[4],
        ]);
        if usize::try_from(declared).unwrap_or(usize::MAX) > self.cap
            && !self.known.take().is_some_and(|known| known())
        {
            return Err(Box::new(tonic::Status::resource_exhausted(format!(
                "a message of {declared} bytes needs a valid token first (the limit without one is {} bytes)",
                self.cap
            ))));
        }
        Ok(())
    }
}

impl<B> Body for Capped<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(context) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Err(error) = this.inspect(data)
                {
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::{BodyExt as _, Full, StreamBody};

    fn frames(
        chunks: &[&[u8]],
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = chunks
            .iter()
            .map(|chunk| Ok(Frame::data(Bytes::copy_from_slice(chunk))))
            .collect();
        StreamBody::new(tokio_stream::iter(chunks))
    }

    #[tokio::test]
    async fn a_first_message_over_the_cap_fails_even_split_across_frames() {
        // 0x00 + length 100_000, split after two bytes.
        let mut body = Capped::new(frames(&[&[0, 0], &[1, 0x86, 0xa0], b"rest"]), 1024, None);
        let first = body.frame().await.unwrap();
        assert!(first.is_ok(), "the prefix is not complete yet");
        let error = body.frame().await.unwrap().unwrap_err();
        let status = error.downcast_ref::<tonic::Status>().unwrap();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);

        let small = Capped::new(
            Full::new(Bytes::from_static(&[0, 0, 0, 0, 3, 1, 2, 3])),
            1024,
            Some(Box::new(|| panic!("no lookup for a small message"))),
        );
        let collected = small.collect().await.unwrap().to_bytes();
        assert_eq!(collected.len(), 8);

        // A known caller may send more.
        let known = Capped::new(
            frames(&[&[0, 0, 1, 0x86, 0xa0]]),
            1024,
            Some(Box::new(|| true)),
        );
        assert_eq!(known.collect().await.unwrap().to_bytes().len(), 5);
    }
}
