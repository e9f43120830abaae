//! Who is calling: operators by bearer token, stations by per-request ed25519 signatures
//! (format in `flashgate_proto::station_auth`), checked here:
//! 1. the four headers are present and well-formed;
//! 2. the timestamp is within `auth_window` of our clock;
//! 3. the signature verifies (strict ed25519) against the key enrolled under the station id —
//!    or, for `Enrol`, against the key in the request, whose fingerprint must be the station id;
//! 4. the nonce was never seen for this station: one compare-and-swap in the store's replay
//!    cache, shared by all replicas (entries are swept after twice the window, by which time an
//!    old request fails check 2 anyway).
//!
//! Then the station must be approved (except for `Enrol`).

use ed25519_dalek::{Signature, VerifyingKey};
use flashgate_proto::station_auth::{
    fingerprint, message_digest, signed_message, NONCE_HEADER, NONCE_LEN, SIGNATURE_HEADER,
    STATION_ID_HEADER, TIMESTAMP_HEADER,
};
use flashgate_proto::v1;
use prost::Message;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::Request;

use crate::coordinator::{now_ms, Coordinator};
use crate::error::{CoordinatorError as E, Result};
use crate::records::*;
use crate::store::{Guard, Write};

struct Claims {
    station_id: String,
    timestamp_ms: u64,
    nonce: [u8; NONCE_LEN],
    signature: Signature,
}

fn header<'a, T>(request: &'a Request<T>, name: &str) -> Result<&'a str> {
    request
        .metadata()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            E::Unauthenticated(format!(
                "missing or unreadable {name} header: station calls must be signed (flashgate_proto::station_auth)"
            ))
        })
}

fn claims<T>(request: &Request<T>) -> Result<Claims> {
    let station_id = header(request, STATION_ID_HEADER)?.to_owned();
    let timestamp_ms = header(request, TIMESTAMP_HEADER)?
        .parse()
        .map_err(|_| E::Unauthenticated(format!("{TIMESTAMP_HEADER} is not unix milliseconds")))?;
    let mut nonce = [0u8; NONCE_LEN];
    hex::decode_to_slice(header(request, NONCE_HEADER)?, &mut nonce)
        .map_err(|_| E::Unauthenticated(format!("{NONCE_HEADER} is not {NONCE_LEN} hex bytes")))?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(header(request, SIGNATURE_HEADER)?, &mut signature)
        .map_err(|_| E::Unauthenticated(format!("{SIGNATURE_HEADER} is not 64 hex bytes")))?;
    Ok(Claims {
        station_id,
        timestamp_ms,
        nonce,
        signature: Signature::from_bytes(&signature),
    })
}

impl Coordinator {
    /// Checks the operator bearer token.
    pub fn check_operator<T>(&self, request: &Request<T>) -> Result<()> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                E::Unauthenticated(
                    "operator calls need `authorization: Bearer <token>` (flashgate --token or FLASHGATE_TOKEN)".into(),
                )
            })?;
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if !bool::from(hash.ct_eq(&self.operator_token_hash)) {
            return Err(E::PermissionDenied(
                "the operator token is not valid".into(),
            ));
        }
        Ok(())
    }

    fn check_signature<T: Message>(
        &self,
        request: &Request<T>,
        method: &str,
        claims: &Claims,
        key: &VerifyingKey,
    ) -> Result<()> {
        let now = now_ms();
        let window = self.config.auth_window.as_millis() as i64;
        if (claims.timestamp_ms as i64 - now).abs() > window {
            return Err(E::Unauthenticated(format!(
                "request timestamp {} is more than {} ms from the coordinator's clock {}; fix the station's clock",
                claims.timestamp_ms, window, now
            )));
        }
        let message = signed_message(
            method,
            claims.timestamp_ms,
            &claims.nonce,
            &message_digest(request.get_ref()),
        );
        key.verify_strict(&message, &claims.signature).map_err(|_| {
            E::Unauthenticated(format!(
                "request signature does not verify for station {}",
                claims.station_id
            ))
        })
    }

    async fn consume_nonce(&self, claims: &Claims) -> Result<()> {
        let key = nonce_key(&claims.station_id, &hex::encode(claims.nonce));
        let fresh = self
            .store
            .commit(
                vec![Guard::Absent(key.clone())],
                vec![Write::Put(
                    key,
                    claims.timestamp_ms.to_string().into_bytes(),
                )],
            )
            .await?;
        if !fresh {
            return Err(E::Unauthenticated(
                "replayed request: this nonce was already used".into(),
            ));
        }
        Ok(())
    }

    /// Authenticates a signed station call; the station must exist and be approved.
    pub async fn authenticate_station<T: Message>(
        &self,
        request: &Request<T>,
        method: &str,
    ) -> Result<StationRecord> {
        let claims = claims(request)?;
        let station = self
            .read::<StationRecord>(&station_key(&claims.station_id))
            .await?
            .ok_or_else(|| {
                E::Unauthenticated(format!(
                    "station {} has not enrolled; run the station's enrol step first",
                    claims.station_id
                ))
            })?
            .0;
        let key_bytes: [u8; 32] = hex::decode(&station.ed25519_public_key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| E::Internal("stored station key is malformed".into()))?;
        let key = VerifyingKey::from_bytes(&key_bytes)
            .map_err(|_| E::Internal("stored station key is malformed".into()))?;
        self.check_signature(request, method, &claims, &key)?;
        self.consume_nonce(&claims).await?;
        match station.state {
            StationState::Approved => Ok(station),
            StationState::Pending => Err(E::PermissionDenied(format!(
                "station {} is not approved yet; an operator must run `flashgate station approve {}`",
                station.station_id, station.station_id
            ))),
            StationState::Revoked => Err(E::PermissionDenied(format!(
                "station {} has been revoked",
                station.station_id
            ))),
        }
    }

    /// Enrols a station: the request is signed with the key it enrols (proof of possession).
    pub async fn enrol(
        &self,
        request: &Request<v1::EnrolRequest>,
        method: &str,
    ) -> Result<v1::EnrolResponse> {
        let req = request.get_ref();
        let ed: [u8; 32] = req
            .ed25519_public_key
            .as_slice()
            .try_into()
            .map_err(|_| E::InvalidArgument("ed25519_public_key must be 32 bytes".into()))?;
        let x: [u8; 32] = req
            .x25519_public_key
            .as_slice()
            .try_into()
            .map_err(|_| E::InvalidArgument("x25519_public_key must be 32 bytes".into()))?;
        if req.name.len() > 128 || req.factory.len() > 128 {
            return Err(E::InvalidArgument(
                "station name and factory are at most 128 characters".into(),
            ));
        }
        let key = VerifyingKey::from_bytes(&ed)
            .map_err(|_| E::InvalidArgument("ed25519_public_key is not a valid point".into()))?;
        let claims = claims(request)?;
        let station_id = fingerprint(&ed);
        if claims.station_id != station_id {
            return Err(E::Unauthenticated(format!(
                "the station id header {} is not the fingerprint {station_id} of the enrolled key",
                claims.station_id
            )));
        }
        self.check_signature(request, method, &claims, &key)?;
        self.consume_nonce(&claims).await?;
        let skey = station_key(&station_id);
        if let Some((existing, _)) = self.read::<StationRecord>(&skey).await? {
            if existing.x25519_public_key != hex::encode(x) {
                return Err(E::AlreadyExists(format!(
                    "station {station_id} is enrolled with another X25519 key; an operator must revoke it before it re-enrols with new keys"
                )));
            }
            return Ok(v1::EnrolResponse {
                station_id,
                state: crate::coordinator::station_to_proto(&existing).state,
            });
        }
        let record = StationRecord {
            station_id: station_id.clone(),
            ed25519_public_key: hex::encode(ed),
            x25519_public_key: hex::encode(x),
            name: req.name.clone(),
            factory: req.factory.clone(),
            state: StationState::Pending,
            enrolled_at_ms: now_ms(),
            approved_at_ms: 0,
        };
        // A concurrent identical enrolment losing this race is harmless: same keys.
        self.store
            .commit(
                vec![Guard::Absent(skey.clone())],
                vec![Write::Put(skey, encode(&record))],
            )
            .await?;
        tracing::info!(station = %station_id, name = %req.name, factory = %req.factory, "station enrolled, awaiting approval");
        Ok(v1::EnrolResponse {
            station_id,
            state: v1::StationState::Pending as i32,
        })
    }
}
