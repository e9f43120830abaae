//! Exit codes, in one place (etcdctl's `error.go`): every failure of a command is a [`Failure`]
//! with the [`Exit`] code a script can branch on; `--help` lists them ([`SUMMARY`]).

use std::fmt::Display;

/// Why `flashgate` stopped, as its process exit code. 0 is success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Anything not listed below.
    Other = 1,
    /// A bad command line, config file or argument value (clap's own usage errors exit 2 too).
    Usage = 2,
    /// The coordinator (or a device link) is unreachable or unavailable: retry later.
    Unavailable = 3,
    /// The thing named does not exist.
    NotFound = 4,
    /// Not authenticated, or not allowed.
    Denied = 5,
    /// It exists already.
    Exists = 6,
    /// Refused as invalid or not possible now (bad input, quota exhausted, failed precondition).
    Refused = 7,
    /// `device verify`: no device with the serial the board claims is registered.
    Unregistered = 8,
    /// `device verify`: the board claims a registered identity that another device holds (its
    /// proof, its chip or its boot checks say so).
    CloneSuspected = 9,
}

/// The exit codes, as `--help` prints them.
pub const SUMMARY: &str = "Exit codes: 0 ok, 2 usage, 3 unreachable/unavailable, 4 not found, \
                           5 unauthenticated/denied, 6 already exists, 7 invalid or refused, \
                           8 device unregistered, 9 clone suspected (device verify), 1 other";

/// A failed command: what to tell the operator and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// The process exit code.
    pub code: Exit,
    /// One line for stderr.
    pub message: String,
}

impl Failure {
    /// A failure with `code`.
    pub fn new(code: Exit, message: impl Display) -> Self {
        Self {
            code,
            message: message.to_string(),
        }
    }

    /// A bad command line or argument value.
    pub fn usage(message: impl Display) -> Self {
        Self::new(Exit::Usage, message)
    }

    /// The thing named does not exist.
    pub fn not_found(message: impl Display) -> Self {
        Self::new(Exit::NotFound, message)
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let (code, hint) = match status.code() {
            Code::Unavailable | Code::DeadlineExceeded => (
                Exit::Unavailable,
                " (is the coordinator running at --endpoint?)",
            ),
            Code::NotFound => (Exit::NotFound, ""),
            Code::Unauthenticated => (Exit::Denied, " (set --token or FLASHGATE_TOKEN)"),
            Code::PermissionDenied => (Exit::Denied, ""),
            Code::AlreadyExists => (Exit::Exists, ""),
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::ResourceExhausted
            | Code::OutOfRange => (Exit::Refused, ""),
            _ => (Exit::Other, ""),
        };
        Self::new(
            code,
            format_args!("{:?}: {}{hint}", status.code(), status.message()),
        )
    }
}

/// Flows of the library report coordinator refusals as a `tonic::Status` inside their error:
/// those keep their exit code.
impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        match error.downcast::<tonic::Status>() {
            Ok(status) => status.into(),
            Err(error) => Self::new(Exit::Other, format_args!("{error:#}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_codes() {
        let cases = [
            (tonic::Code::Unavailable, 3),
            (tonic::Code::NotFound, 4),
            (tonic::Code::Unauthenticated, 5),
            (tonic::Code::PermissionDenied, 5),
            (tonic::Code::AlreadyExists, 6),
            (tonic::Code::ResourceExhausted, 7),
            (tonic::Code::Internal, 1),
        ];
        for (status, code) in cases {
            let failure = Failure::from(tonic::Status::new(status, "x"));
            assert_eq!(failure.code as u8, code, "{status:?}");
            let wrapped = Failure::from(anyhow::Error::new(tonic::Status::new(status, "x")));
            assert_eq!(
                wrapped.code as u8, code,
                "{status:?} inside an anyhow error"
            );
        }
    }
}
