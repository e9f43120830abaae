//! Who is calling the station API: per-request ed25519 signatures (format in
//! `flashgate_proto::station_auth`), checked here:
//! 1. the four headers are present and well-formed;
//! 2. the timestamp is within `auth_window` of our clock;
//! 3. the signature verifies (strict ed25519) against the key enrolled under the station id —
//!    or, for `Enrol`, against the key in the request, whose fingerprint must be the station id;
//! 4. the nonce was never seen for this station ([`super::nonces`], one compare-and-swap shared
//!    by all replicas).
//!
//! Then the station must be approved (except for `Enrol`).
//!
//! Over TLS (the default) the connection itself must also be the station's: the client
//! certificate's ed25519 key ([`crate::tls::station_key`], whose possession the handshake
//! proved) must be the key enrolled under the claimed station id. The per-request signatures
//! stay because they add what mutual TLS does not: each request is bound to its method, body
//! and a nonce used once (a recorded request cannot be replayed, even on the same connection),
//! and the request authenticates itself wherever it was carried (through a TLS-terminating
//! proxy, or a plain-text test setup started with `--insecure-plaintext`).

use std::time::Duration;

use ed25519_dalek::{Signature, VerifyingKey};
use flashgate_proto::clock::now_ms;
use flashgate_proto::station_auth::{
    fingerprint, message_digest, signed_message, NONCE_HEADER, NONCE_LEN, SIGNATURE_HEADER,
    STATION_ID_HEADER, TIMESTAMP_HEADER,
};
use flashgate_proto::v1;
use prost::Message;
use tonic::Request;

use std::sync::Arc;

use super::nonces::{self, Nonce};
use super::signed_call::{replayed, NonceClaim, SignedCall};
use super::stations::{StationRecord, StationState, Stations};
use crate::access::EnrolmentTokens;
use crate::error::{CoordinatorError as E, Result};
use crate::ids::StationId;
use crate::repository::{Cache, Db, Stored};

/// Station records this replica keeps for the hot path (each use guarded on its revision).
const CACHED_STATIONS: usize = 4096;

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

/// Refused unless `station` is approved.
pub(super) fn require_approved(station: &StationRecord) -> Result<()> {
    let id = &station.station_id;
    match station.state {
        StationState::Approved => Ok(()),
        StationState::Pending => Err(E::PermissionDenied(format!(
            "station {id} is not approved yet; an operator must run `flashgate station approve {id}`"
        ))),
        StationState::Revoked => Err(E::PermissionDenied(format!(
            "station {id} has been revoked"
        ))),
    }
}

/// Checks signed station requests and enrols stations.
#[derive(Clone)]
pub struct StationAuth {
    db: Db,
    stations: Stations,
    tokens: EnrolmentTokens,
    window: Duration,
    require_mtls: bool,
    cached: Arc<Cache<StationId, Stored<StationRecord>>>,
    /// Enrolled keys already decompressed (a point decompression is a field square root, a
    /// tenth of a signature check), by their 32 bytes: the same bytes always decompress to the
    /// same point, so this changes nothing a check decides.
    keys: Arc<Cache<[u8; 32], VerifyingKey>>,
}

/// The station key a connection proved in its TLS handshake, if it presented one.
fn connection_key<T>(request: &Request<T>) -> Option<[u8; 32]> {
    let certs = request.peer_certs()?;
    certs.first().and_then(|c| crate::tls::station_key(c))
}

impl StationAuth {
    /// `window`: accepted clock difference, each side. `require_mtls`: station calls must come
    /// over TLS with the station's own client certificate (off only for a coordinator served
    /// with `--insecure-plaintext`).
    pub fn new(
        db: Db,
        stations: Stations,
        tokens: EnrolmentTokens,
        window: Duration,
        require_mtls: bool,
    ) -> Self {
        Self {
            db,
            stations,
            tokens,
            window,
            require_mtls,
            cached: Arc::new(Cache::new(CACHED_STATIONS)),
            keys: Arc::new(Cache::new(CACHED_STATIONS)),
        }
    }

    /// Over TLS, the connection must have proved `key` (the enrolled or enrolling key).
    fn check_connection<T>(&self, request: &Request<T>, key: &[u8; 32]) -> Result<()> {
        match connection_key(request) {
            Some(proved) if &proved == key => Ok(()),
            Some(_) => Err(E::Unauthenticated(
                "the TLS client certificate is not this station's key: a station connects with the certificate of its own identity".into(),
            )),
            None if self.require_mtls => Err(E::Unauthenticated(
                "station calls need mutual TLS with the station's identity certificate (flashgate-station does this; a station started with --insecure-plaintext cannot reach a TLS coordinator)".into(),
            )),
            None => Ok(()),
        }
    }

    fn check_signature<T: Message>(
        &self,
        request: &Request<T>,
        method: &str,
        claims: &Claims,
        key: &VerifyingKey,
    ) -> Result<()> {
        let now = now_ms();
        let window = self.window.as_millis() as i64;
        // In i128: any u64 timestamp minus any i64 clock fits, so a caller's far-off value is
        // refused like any other skew instead of overflowing before it is authenticated.
        if (i128::from(claims.timestamp_ms) - i128::from(now)).abs() > i128::from(window) {
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

    async fn consume_nonce(&self, station: &StationId, claims: &Claims) -> Result<()> {
        if !nonces::consume(&self.db, station, claims.nonce, claims.timestamp_ms).await? {
            return Err(replayed());
        }
        Ok(())
    }

    /// The station's record, from the store.
    async fn enrolled(&self, claims: &Claims) -> Result<(StationId, Stored<StationRecord>)> {
        let not_enrolled = || {
            E::Unauthenticated(format!(
                "station {} has not enrolled; run the station's enrol step first",
                claims.station_id
            ))
        };
        let id = StationId::parse(&claims.station_id).map_err(|_| not_enrolled())?;
        let stored = self.stations.get(&id).await?.ok_or_else(not_enrolled)?;
        Ok((id, stored))
    }

    /// Checks connection and signature of `request` against the key of `stored`.
    fn check_caller<T: Message>(
        &self,
        request: &Request<T>,
        method: &str,
        claims: &Claims,
        stored: &Stored<StationRecord>,
    ) -> Result<()> {
        let bytes = &stored.record.ed25519_public_key;
        let key = match self.keys.get(bytes) {
            Some(key) => key,
            None => {
                let key = VerifyingKey::from_bytes(bytes).map_err(|_| E::CorruptRecord {
                    key: stored.key.clone(),
                    reason: "the ed25519 key is not a curve point".into(),
                })?;
                self.keys.put(*bytes, key);
                key
            }
        };
        self.check_connection(request, &stored.record.ed25519_public_key)?;
        self.check_signature(request, method, claims, &key)
    }

    /// Authenticates a signed station call; the station must exist and be approved.
    pub async fn authenticate<T: Message>(
        &self,
        request: &Request<T>,
        method: &str,
    ) -> Result<StationRecord> {
        let claims = claims(request)?;
        let (id, stored) = self.enrolled(&claims).await?;
        self.check_caller(request, method, &claims, &stored)?;
        self.consume_nonce(&id, &claims).await?;
        require_approved(&stored.record)?;
        Ok(stored.record)
    }

    /// Authenticates a signed call of an approved station without consuming its nonce, and
    /// without reading the station when this replica has its record: the call's one
    /// transaction must carry [`SignedCall::guard`] (station unchanged, nonce unused and
    /// consumed), and a call refused before that commits goes through [`Self::refused`].
    ///
    /// The key a station signs with is fixed by its id (the id is the key's fingerprint, and a
    /// record is never re-keyed), so a cached record verifies the signature as well as a fresh
    /// one; its state is what the guard re-checks. A cached record that would refuse the call
    /// (pending, revoked) is read again first: a refusal is never decided from the cache.
    pub async fn verify_signed<T: Message>(
        &self,
        request: &Request<T>,
        method: &str,
    ) -> Result<SignedCall> {
        let claims = claims(request)?;
        let cached = StationId::parse(&claims.station_id)
            .ok()
            .and_then(|id| self.cached.get(&id));
        let stored = match cached {
            Some(stored) if stored.record.state == StationState::Approved => stored,
            _ => {
                let (id, stored) = self.enrolled(&claims).await?;
                self.cached.put(id, stored.clone());
                stored
            }
        };
        self.check_caller(request, method, &claims, &stored)?;
        let call = SignedCall {
            nonce: NonceClaim {
                station: stored.record.station_id.clone(),
                nonce: Nonce(claims.nonce),
                timestamp_ms: claims.timestamp_ms,
            },
            station: stored,
        };
        if let Err(refusal) = require_approved(&call.station.record) {
            return Err(self.refused(&call.nonce, refusal).await);
        }
        Ok(call)
    }

    /// Keeps the fresher station record a refused transaction read back.
    pub fn remember(&self, call: &SignedCall) {
        self.cached
            .put(call.station.record.station_id.clone(), call.station.clone());
    }

    /// The answer to a call of [`Self::verify_signed`] refused before its transaction
    /// committed: its nonce is consumed now (a separate write, off the hot path), so the
    /// refused request cannot be replayed either; a nonce already used makes it a replay —
    /// unless the refusal is the store failing, whose transaction may have committed, nonce
    /// and all, with its answer lost (an etcd member lost mid-commit): that call keeps its own
    /// "unavailable, retry" answer, never "replayed". A replay is refused either way; the
    /// station retries with a fresh request (a certificate comes back the same for the same
    /// chip; a lease granted unseen expires and gives its slots back).
    pub async fn refused(&self, nonce: &NonceClaim, refusal: E) -> E {
        match nonces::consume(&self.db, &nonce.station, nonce.nonce.0, nonce.timestamp_ms).await {
            Ok(true) => refusal,
            Ok(false) if refusal.outcome_unknown() => refusal,
            Ok(false) => replayed(),
            Err(error) => error,
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
        let id = StationId::parse(&station_id)?;
        self.check_connection(request, &ed)?;
        self.check_signature(request, method, &claims, &key)?;
        // A bad token is refused before anything is written, the nonce included.
        let token = if req.enrolment_token.is_empty() {
            None
        } else {
            Some(self.tokens.usable(&req.enrolment_token).await?)
        };
        self.consume_nonce(&id, &claims).await?;
        if let Some(existing) = self.stations.get(&id).await? {
            if existing.record.x25519_public_key != x {
                return Err(E::AlreadyExists(format!(
                    "station {id} is enrolled with another X25519 key; an operator must revoke it before it re-enrols with new keys"
                )));
            }
            return Ok(v1::EnrolResponse {
                station_id,
                state: existing.record.state.to_proto() as i32,
            });
        }
        let now = now_ms();
        let mut record = StationRecord {
            station_id: id.clone(),
            ed25519_public_key: ed,
            x25519_public_key: x,
            name: req.name.clone(),
            factory: req.factory.clone(),
            state: StationState::Pending,
            enrolled_at_ms: now,
            approved_at_ms: 0,
        };
        if let Some(token) = token {
            // The operator who made the bundle approved this enrolment in advance.
            record.state = StationState::Approved;
            record.approved_at_ms = now;
            if !self.stations.insert_with_token(&record, &token).await? {
                return Err(E::Unavailable(
                    "the station or its enrolment token changed meanwhile; enrol again".into(),
                ));
            }
            tracing::info!(station = %id, name = %req.name, factory = %req.factory, "station enrolled with a token and approved");
            return Ok(v1::EnrolResponse {
                station_id,
                state: v1::StationState::Approved as i32,
            });
        }
        // A concurrent identical enrolment losing this race is harmless: same keys.
        self.stations.insert(&record).await?;
        tracing::info!(station = %id, name = %req.name, factory = %req.factory, "station enrolled, awaiting approval");
        Ok(v1::EnrolResponse {
            station_id,
            state: v1::StationState::Pending as i32,
        })
    }
}
