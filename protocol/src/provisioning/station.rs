//! The station's side of provisioning: parameter block, key agreement, sealing requests,
//! opening replies and checking the receipt.

use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};

use super::messages::{StationMessage, TargetReply};
use super::{LoaderHello, ParamBlock};
use crate::codec::Codec;
use crate::key_schedule::{SessionKeys, Transcript, JOB_NONCE_LEN};
use crate::sealed_frame;
use crate::{ErrorCode, Serial};

/// Before the loader has answered: the station's key and job nonce.
pub struct StationHandshake {
    secret: StaticSecret,
    params: ParamBlock,
}

impl StationHandshake {
    /// A handshake with the station's X25519 secret, a fresh job nonce and the SHA-256 of the
    /// loader image the station writes.
    pub fn new(
        secret: StaticSecret,
        job_nonce: [u8; JOB_NONCE_LEN],
        loader_digest: [u8; 32],
    ) -> Self {
        let params = ParamBlock {
            station_public: PublicKey::from(&secret).to_bytes(),
            job_nonce,
            loader_digest,
        };
        Self { secret, params }
    }

    /// The parameter block to write at `PARAMS_ADDR`.
    pub fn params(&self) -> ParamBlock {
        self.params
    }

    /// Consumes the loader hello. A hello that does not echo the parameter block's loader
    /// digest (a loader that read another block, or none) is refused with
    /// [`ErrorCode::LoaderMismatch`].
    pub fn complete(self, hello: &LoaderHello) -> Result<StationSession, ErrorCode> {
        let loader_digest = &self.params.loader_digest;
        if !bool::from(hello.loader_digest.ct_eq(loader_digest)) {
            return Err(ErrorCode::LoaderMismatch);
        }
        let transcript = Transcript {
            station_public: self.params.station_public,
            loader_public: hello.loader_public,
            serial: hello.serial,
            job_nonce: self.params.job_nonce,
            loader_digest: *loader_digest,
        };
        let keys = SessionKeys::derive(&self.secret, &hello.loader_public, &transcript)?;
        Ok(StationSession {
            keys,
            serial: hello.serial,
            loader_public: hello.loader_public,
            send_seq: 0,
            recv_seq: 0,
        })
    }
}

/// An established session: seal requests, open replies.
pub struct StationSession {
    keys: SessionKeys,
    serial: Serial,
    loader_public: [u8; 32],
    send_seq: u32,
    recv_seq: u32,
}

impl StationSession {
    /// The serial the loader reported (its unique ID).
    pub fn serial(&self) -> Serial {
        self.serial
    }

    /// The loader's ephemeral X25519 key of this run, from its hello: the coordinator seals the
    /// chip's device key to it.
    pub fn loader_public(&self) -> [u8; 32] {
        self.loader_public
    }

    /// The key-confirmation message, always the first request.
    pub fn key_confirm(&self) -> StationMessage<'static> {
        StationMessage::KeyConfirm {
            transcript_hash: self.keys.transcript_hash,
        }
    }

    /// Seals `msg` as the next frame into `out`, returning the frame length.
    pub fn seal(&mut self, msg: &StationMessage<'_>, out: &mut [u8]) -> Result<usize, ErrorCode> {
        let body = out
            .get_mut(sealed_frame::HEADER_LEN..)
            .ok_or(ErrorCode::BadLength)?;
        let n = msg.encode_into(body)?;
        let len = sealed_frame::seal_in_place(&self.keys.station_to_target, self.send_seq, out, n)?;
        self.send_seq += 1;
        Ok(len)
    }

    /// Opens the loader's next reply (decrypting in place).
    pub fn open<'f>(&mut self, frame: &'f mut [u8]) -> Result<TargetReply<'f>, ErrorCode> {
        let range =
            sealed_frame::open_in_place(&self.keys.target_to_station, self.recv_seq, frame)?;
        self.recv_seq += 1;
        TargetReply::read_bytes(&frame[range])
    }

    /// Seals a request into a new vector.
    #[cfg(feature = "std")]
    pub fn seal_to_vec(
        &mut self,
        msg: &StationMessage<'_>,
    ) -> Result<std::vec::Vec<u8>, ErrorCode> {
        let mut buf = std::vec![0u8; crate::mailbox::IN_MAX];
        let n = self.seal(msg, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
}
