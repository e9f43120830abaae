//! Who is logged in: a table, in memory only, from a random session id (the cookie) to the
//! operator's credentials and the CSRF token of their forms. The token is never written
//! anywhere and never logged; a restart logs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flashgate_proto::operator_auth::OperatorCredentials;
use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;

use crate::access::Role;

/// The session cookie's name.
pub const COOKIE: &str = "flashgate_session";

/// Sessions kept at most; the oldest go first beyond this (a bound on memory, not a limit
/// anyone should meet).
const MAX_SESSIONS: usize = 1024;

/// Who logged in, as the API answered the login check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    /// The credential's name.
    pub name: String,
    /// Its role; `None` if the API named none the console knows.
    pub role: Option<Role>,
}

impl Operator {
    /// Whether the pages offer actions that need `needed` (the API decides again on each).
    pub fn may(&self, needed: Role) -> bool {
        self.role.is_some_and(|role| role.permits(needed))
    }
}

/// One logged-in operator.
#[derive(Clone, Debug)]
pub struct Session {
    /// What every API call of this session carries (the token; redacted in `Debug`).
    pub credentials: OperatorCredentials,
    /// Whose session it is.
    pub operator: Operator,
    /// Must come back with every form.
    pub csrf: String,
    created: Instant,
    last_used: Instant,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// How long sessions live.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    /// Unused this long, a session ends.
    pub idle: Duration,
    /// Used or not, a session ends this long after login.
    pub absolute: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 3600),
        }
    }
}

/// The session table.
pub struct Sessions {
    table: Mutex<HashMap<String, Session>>,
    lifetimes: Lifetimes,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    /// An empty table.
    pub fn new(lifetimes: Lifetimes) -> Self {
        Self {
            table: Mutex::new(HashMap::new()),
            lifetimes,
        }
    }

    fn expired(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.last_used) > self.lifetimes.idle
            || now.duration_since(session.created) > self.lifetimes.absolute
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock cannot leave the map half-updated (every change is
        // one insert or remove), so a poisoned table is still a good one.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session; returns its id (the cookie's value).
    pub fn start(&self, credentials: OperatorCredentials, operator: Operator) -> String {
        let now = Instant::now();
        let id = random_hex();
        let mut table = self.lock();
        table.retain(|_, s| !self.expired(s, now));
        if table.len() >= MAX_SESSIONS {
            if let Some(oldest) = table
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            {
                table.remove(&oldest);
            }
        }
        table.insert(
            id.clone(),
            Session {
                credentials,
                operator,
                csrf: random_hex(),
                created: now,
                last_used: now,
            },
        );
        id
    }

    /// The live session `id` names (and marks it used), or `None`.
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut table = self.lock();
        let session = table.get_mut(id)?;
        if self.expired(session, now) {
            table.remove(id);
            return None;
        }
        session.last_used = now;
        Some(session.clone())
    }

    /// Ends session `id`.
    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// The session id in a `Cookie` header, if any.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> OperatorCredentials {
        OperatorCredentials::bearer("s3cret").unwrap()
    }

    fn operator() -> Operator {
        Operator {
            name: "ops".into(),
            role: Some(Role::Viewer),
        }
    }

    #[test]
    fn sessions_end_when_idle_or_logged_out() {
        let sessions = Sessions::new(Lifetimes {
            idle: Duration::from_millis(50),
            absolute: Duration::from_secs(60),
        });
        let id = sessions.start(credentials(), operator());
        assert_eq!(id.len(), 64);
        let session = sessions.get(&id).expect("live");
        assert!(session.csrf_ok(&session.csrf.clone()));
        assert!(!session.csrf_ok("forged"));
        std::thread::sleep(Duration::from_millis(80));
        assert!(sessions.get(&id).is_none(), "idle session expired");

        let id = sessions.start(credentials(), operator());
        sessions.end(&id);
        assert!(sessions.get(&id).is_none());
        assert!(sessions.get("not-a-session").is_none());
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        let sessions = Sessions::new(Lifetimes::default());
        let id = sessions.start(credentials(), operator());
        let text = format!("{:?}", sessions.get(&id).unwrap());
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn finds_the_cookie_among_others() {
        assert_eq!(
            from_cookie_header("a=1; flashgate_session=abc; b=2"),
            Some("abc")
        );
        assert_eq!(from_cookie_header("a=1"), None);
    }
}
