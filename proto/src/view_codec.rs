//! The codec of the safety-service's wire view (`safety::v1::wire`): prost's, except that a
//! request that is not valid protobuf is the client's fault (`INVALID_ARGUMENT`, saying where
//! decoding stopped), where tonic's prost codec answers `INTERNAL`.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// `tonic_prost::ProstCodec` with [`ViewDecoder`].
#[derive(Debug, Clone)]
pub struct ViewCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ViewCodec<T, U> {
    fn default() -> Self {
        ViewCodec(PhantomData)
    }
}

impl<T, U> Codec for ViewCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ViewDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ViewDecoder(PhantomData)
    }
}

/// Decodes a request straight from the received buffer (its strings stay slices of it).
#[derive(Debug)]
pub struct ViewDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for ViewDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|error| Status::invalid_argument(format!("malformed request: {error}")))
    }
}
