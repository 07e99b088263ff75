//! The protobuf codec of `coffer.v1`: tonic-prost's, except that a request
//! that does not decode is the client's mistake (INVALID_ARGUMENT), not a
//! fault of the server (tonic reports INTERNAL, as gRPC's table suggests).

use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstCodec;

pub struct CofferCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for CofferCodec<T, U> {
    fn default() -> Self {
        CofferCodec(ProstCodec::default())
    }
}

impl<T, U> Codec for CofferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = CofferDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CofferDecoder(PhantomData)
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
        BufferSettings::default()
    }
}
