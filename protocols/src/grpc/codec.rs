//! The protobuf codec of `coffer.v1`: prost messages, as tonic-prost codes
//! them, except that a request that does not decode is the client's mistake
//! (INVALID_ARGUMENT), not a fault of the server (tonic reports INTERNAL, as
//! gRPC's table suggests), and that buffers are sized for this API's small
//! messages: tonic's default allocates 8 KiB for every request and every
//! response, a size glibc serves from its slow path, not its thread cache.

use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// The first allocation for a response: most answers fit (a KV read is a few
/// hundred bytes) and it stays within the allocator's per-thread cache. A
/// larger message is measured first and gets its exact size at once.
const RESPONSE_BUFFER_BYTES: usize = 1024;
/// The first allocation for a request; larger ones grow it by doubling.
const REQUEST_BUFFER_BYTES: usize = 512;
/// Watch events: sent together once this many bytes are ready (tonic's default).
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

pub struct CofferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for CofferCodec<T, U> {
    fn default() -> Self {
        CofferCodec(PhantomData)
    }
}

impl<T, U> Codec for CofferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = CofferEncoder<T>;
    type Decoder = CofferDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        CofferEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        CofferDecoder(PhantomData)
    }
}

pub struct CofferEncoder<T>(PhantomData<T>);

impl<T: prost::Message> Encoder for CofferEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let length = item.encoded_len();
        buf.reserve(length);
        // `encode_raw`: the space is reserved, so prost's check (which would
        // measure the message a second time) has nothing to add.
        item.encode_raw(buf);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(RESPONSE_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
    }
}

pub struct CofferDecoder<U>(PhantomData<U>);

impl<U: prost::Message + Default> Decoder for CofferDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|error| {
            super::status(
                crate::ErrorCode::InvalidRequest,
                &[format!("the request message does not decode: {error}")],
            )
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(REQUEST_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use prost::Message;
    use tonic::codec::{EncodeBody, SingleMessageCompressionOverride};

    use crate::grpc::pb;

    /// Encodes `message` as a server would send it, and reads the frame back.
    async fn round_trip(message: pb::Response) -> pb::Response {
        let body = EncodeBody::new_server(
            CofferEncoder(PhantomData),
            tokio_stream::once(Ok(message)),
            None,
            SingleMessageCompressionOverride::default(),
            None,
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        // The 5-byte prefix: not compressed, then the length.
        assert_eq!(bytes[0], 0);
        let length = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        assert_eq!(length, bytes.len() - 5);
        pb::Response::decode(&bytes[5..]).unwrap()
    }

    #[tokio::test]
    async fn messages_smaller_and_larger_than_the_first_buffer_encode_whole() {
        for size in [0, 10, RESPONSE_BUFFER_BYTES, 5 * RESPONSE_BUFFER_BYTES] {
            let message = pb::Response {
                request_id: "r".repeat(size),
                lease_id: "lease".into(),
                lease_duration: 60,
                ..Default::default()
            };
            assert_eq!(round_trip(message.clone()).await, message, "size {size}");
        }
    }
}
