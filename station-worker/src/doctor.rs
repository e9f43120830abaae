//! `flashgate-station doctor`: checks what a run needs — probes, the coordinator, the clock, key
//! files — and prints a checklist with a fix for each failure. Reads nothing secret into its
//! output (key files are checked for their mode and that they open, never printed).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flashgate_proto::v1::{self, station_service_client::StationServiceClient};

use crate::config::{ProbeBackend, ProbeSpec};
use crate::identity::{StationIdentity, StationKek, IDENTITY_FILE, KEK_ENV};

/// The coordinator accepts station signatures within ±120 s of its clock.
pub const MAX_SKEW: Duration = Duration::from_secs(120);
/// A skew above this is reported as a warning.
pub const WARN_SKEW: Duration = Duration::from_secs(30);

/// How a check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but look at it.
    Warn,
    /// A run would fail or be unsafe.
    Fail,
}

/// One line of the checklist.
#[derive(Clone, Debug)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it (failures and warnings).
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn bad(
        status: Status,
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// What the doctor looks at.
pub struct DoctorInput {
    /// Coordinator endpoint (empty: the one the enrolment bundle named).
    pub coordinator: String,
    /// State directory (identity file).
    pub state_dir: PathBuf,
    /// `--kek-file`, if given.
    pub kek_file: Option<PathBuf>,
    /// Configured probes.
    pub probes: Vec<ProbeSpec>,
    /// Timeout per network check.
    pub timeout: Duration,
}

/// Runs every check (blocking; starts its own small runtime for the gRPC call).
pub fn run_checks(input: &DoctorInput) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.extend(check_probes(&input.probes, input.timeout));
    match crate::enrolment::StationTrust::load(&input.state_dir) {
        Ok(trust) => {
            let endpoint = if input.coordinator.is_empty() {
                trust.endpoint.clone()
            } else {
                input.coordinator.clone()
            };
            checks.extend(check_coordinator(
                &endpoint,
                &trust.security(),
                input.timeout,
            ));
        }
        Err(e) => checks.push(Check::bad(
            Status::Fail,
            "coordinator trust",
            e.to_string(),
            "enrol with the operator's bundle: `flashgate-station enrol --bundle FILE`",
        )),
    }
    checks.extend(check_keys(&input.state_dir, input.kek_file.as_deref()));
    checks
}

/// The checklist as printed.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let tag = match c.status {
            Status::Ok => "[ OK ]",
            Status::Warn => "[WARN]",
            Status::Fail => "[FAIL]",
        };
        out.push_str(&format!("{tag} {}: {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("       fix: {fix}\n"));
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    out.push_str(&format!(
        "{} check(s): {failed} failed, {warned} warning(s)\n",
        checks.len()
    ));
    out
}

fn reachable(addr: SocketAddr, timeout: Duration) -> Result<Duration, std::io::Error> {
    let started = std::time::Instant::now();
    TcpStream::connect_timeout(&addr, timeout).map(|_| started.elapsed())
}

fn check_probes(probes: &[ProbeSpec], timeout: Duration) -> Vec<Check> {
    let mut checks = Vec::new();
    for spec in probes {
        checks.push(check_backend(spec, timeout));
        if let Some(uart) = spec.uart {
            let name = format!("probe {} UART {uart}", spec.name);
            checks.push(match reachable(uart, timeout) {
                Ok(_) => Check::ok(name, "reachable"),
                Err(e) => Check::bad(
                    Status::Warn,
                    name,
                    format!("not reachable: {e} (the post-lock hello cannot be checked)"),
                    "start the UART bridge (e.g. ser2net) or remove `uart` from the probe entry",
                ),
            });
        }
    }
    #[cfg(feature = "probe-rs")]
    {
        let listed = crate::probe::list_probes();
        let denied = listed.iter().filter(|p| !p.accessible).count();
        checks.push(if listed.is_empty() {
            Check::bad(
                Status::Warn,
                "USB probes (probe-rs)",
                "none found",
                "plug the probe in; check `lsusb`",
            )
        } else if denied > 0 {
            Check::bad(
                Status::Fail,
                "USB probes (probe-rs)",
                format!("{} found, {denied} without permission", listed.len()),
                "install deploy/station/70-flashgate-probes.rules and add the service user to plugdev (docs/probes.md)",
            )
        } else {
            Check::ok(
                "USB probes (probe-rs)",
                listed
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        });
    }
    if checks.is_empty() {
        checks.push(Check::bad(
            Status::Warn,
            "probes",
            "none configured",
            "list probes in the configuration file ([[probes]] name, gdb, uart) — or run with --emulate N",
        ));
    }
    checks
}

fn check_backend(spec: &ProbeSpec, timeout: Duration) -> Check {
    match &spec.backend {
        ProbeBackend::Gdb(gdb) => {
            let name = format!("probe {} GDB server {gdb}", spec.name);
            match reachable(*gdb, timeout) {
                Ok(rtt) => Check::ok(name, format!("reachable ({} ms)", rtt.as_millis())),
                Err(e) => Check::bad(
                    Status::Fail,
                    name,
                    format!("not reachable: {e}"),
                    "start the probe's GDB server (openocd / pyocd / JLinkGDBServer / st-util) on that address, or fix `gdb` in the [[probes]] entry",
                ),
            }
        }
        ProbeBackend::ProbeRs(usb) => {
            let name = format!(
                "probe {} USB {} ({})",
                spec.name,
                usb.selector
                    .as_ref()
                    .map_or_else(|| "any".to_owned(), ToString::to_string),
                usb.chip
            );
            match crate::fixture::for_probe(spec) {
                Ok(_) => Check::ok(name, "probe-rs backend built in (see the USB probes line)"),
                Err(e) => Check::bad(
                    Status::Fail,
                    name,
                    e.to_string(),
                    "rebuild with `--features probe-rs`, or drive the probe through a GDB server",
                ),
            }
        }
    }
}

fn check_coordinator(
    endpoint: &str,
    security: &flashgate_proto::transport::Security,
    timeout: Duration,
) -> Vec<Check> {
    let name = format!("coordinator {endpoint}");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return vec![Check::bad(Status::Fail, name, e.to_string(), "—")],
    };
    let answer = runtime.block_on(async {
        let channel = flashgate_proto::transport::endpoint(endpoint, security)
            .map_err(|e| e.to_string())?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect()
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let sent = SystemTime::now();
        let response = StationServiceClient::new(channel)
            .get_coordinator_info(v1::GetCoordinatorInfoRequest {})
            .await
            .map_err(|s| format!("GetCoordinatorInfo failed: {:?} {}", s.code(), s.message()))?;
        let received = SystemTime::now();
        let date = response
            .metadata()
            .get("date")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok::<_, String>((response.into_inner(), date, sent, received))
    });
    let mut checks = Vec::new();
    match answer {
        Err(e) => {
            checks.push(Check::bad(
                Status::Fail,
                name,
                e,
                "check --coordinator / FLASHGATE_COORDINATOR, the network path and that the coordinator serves (`flashgate orders status`)",
            ));
            checks.push(local_clock_check());
        }
        Ok((info, date, sent, received)) => {
            checks.push(if info.lease_signing_public_key.len() == 32 {
                Check::ok(
                    name,
                    format!("GetCoordinatorInfo answered (version {})", info.version),
                )
            } else {
                Check::bad(
                    Status::Fail,
                    name,
                    "answered without a valid lease-signing key",
                    "the endpoint is not a flashgate coordinator, or it is misconfigured",
                )
            });
            let midpoint = sent + received.duration_since(sent).unwrap_or_default() / 2;
            checks.push(match date.as_deref().and_then(parse_http_date) {
                Some(theirs) => clock_check(midpoint, theirs),
                None => local_clock_check(),
            });
        }
    }
    checks
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Compares our clock with the coordinator's (its HTTP `date` header, 1 s resolution).
pub fn clock_check(ours: SystemTime, theirs_unix: i64) -> Check {
    let skew = unix(ours) - theirs_unix;
    let abs = Duration::from_secs(skew.unsigned_abs());
    let detail = format!("{skew:+} s against the coordinator (±1 s resolution)");
    let fix = "synchronise the clock (systemd-timesyncd / chrony: `timedatectl set-ntp true`)";
    if abs > MAX_SKEW {
        Check::bad(
            Status::Fail,
            "clock",
            format!(
                "{detail}: beyond the ±120 s the coordinator accepts; every signed call is refused"
            ),
            fix,
        )
    } else if abs > WARN_SKEW {
        Check::bad(Status::Warn, "clock", detail, fix)
    } else {
        Check::ok("clock", detail)
    }
}

/// Without the coordinator's time: only a sanity check of the local clock.
fn local_clock_check() -> Check {
    let now = unix(SystemTime::now());
    // 2024-01-01 .. 2100-01-01
    if (1_704_067_200..4_102_444_800).contains(&now) {
        Check::bad(
            Status::Warn,
            "clock",
            "the coordinator's time is unknown; the local clock looks plausible",
            "check NTP (`timedatectl`)",
        )
    } else {
        Check::bad(
            Status::Fail,
            "clock",
            format!("the local clock reads unix time {now}, which is not plausible"),
            "set the clock and enable NTP (`timedatectl set-ntp true`); a Pi without RTC needs network time before the station starts",
        )
    }
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to unix seconds.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace().skip(1);
    let day: i64 = parts.next()?.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| Some(*m) == parts.clone().next())? as i64
        + 1;
    parts.next();
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|x| x.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(unix)]
fn mode(path: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode(path: &Path) -> std::io::Result<u32> {
    std::fs::metadata(path).map(|_| 0o600)
}

fn check_keys(state_dir: &Path, kek_file: Option<&Path>) -> Vec<Check> {
    let mut checks = Vec::new();
    match kek_file {
        Some(path) => {
            let name = format!("KEK file {}", path.display());
            checks.push(match mode(path) {
                Err(e) => Check::bad(
                    Status::Fail,
                    name,
                    format!("cannot read: {e}"),
                    "point --kek-file at the station credential (%d/station-kek under systemd)",
                ),
                Ok(m) if m & 0o007 != 0 => Check::bad(
                    Status::Fail,
                    name,
                    format!("mode {m:04o} is readable by other users"),
                    format!("chmod 0600 {} (or 0640 root:flashgate)", path.display()),
                ),
                Ok(m) => Check::ok(name, format!("mode {m:04o}")),
            });
        }
        None if std::env::var_os(KEK_ENV).is_some() => {
            checks.push(Check::ok("KEK", format!("from ${KEK_ENV}")));
        }
        None => checks.push(Check::bad(
            Status::Fail,
            "KEK",
            format!("neither --kek-file nor ${KEK_ENV}"),
            "pass --kek-file FILE (systemd: LoadCredentialEncrypted= + --kek-file %d/station-kek)",
        )),
    }
    let path = state_dir.join(IDENTITY_FILE);
    let name = format!("identity file {}", path.display());
    match mode(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => checks.push(Check::bad(
            Status::Fail,
            name,
            "missing",
            "make it with `flashgate-station enrol` (then have the operator approve the fingerprint)",
        )),
        Err(e) => checks.push(Check::bad(
            Status::Fail,
            name,
            format!("cannot read: {e}"),
            "run as the service user, or fix the state directory's ownership",
        )),
        Ok(m) => {
            checks.push(if m != 0o600 {
                Check::bad(
                    Status::Fail,
                    name.clone(),
                    format!("mode {m:04o}, expected 0600"),
                    format!("chmod 0600 {}", path.display()),
                )
            } else {
                Check::ok(name.clone(), "mode 0600")
            });
            if let Ok(kek) = StationKek::load(kek_file) {
                checks.push(match StationIdentity::load_or_create(state_dir, &kek) {
                    Ok(identity) => Check::ok(
                        "identity opens",
                        format!("station {}", identity.station_id()),
                    ),
                    Err(e) => Check::bad(
                        Status::Fail,
                        "identity opens",
                        e.to_string(),
                        "use the KEK this identity was sealed with; a lost KEK means a new identity (enrol, approve, revoke the old one)",
                    ),
                });
            }
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(1_709_164_800)
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn clock_skew_is_graded() {
        let now = SystemTime::now();
        let t = unix(now);
        assert_eq!(clock_check(now, t).status, Status::Ok);
        assert_eq!(clock_check(now, t - 60).status, Status::Warn);
        assert_eq!(clock_check(now, t + 300).status, Status::Fail);
    }

    #[test]
    fn key_files_with_loose_modes_fail() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let kek = StationKek::generate();
        let kek_path = dir.path().join("kek.hex");
        kek.write_to(&kek_path).unwrap();
        StationIdentity::load_or_create(dir.path(), &kek).unwrap();
        let ok = check_keys(dir.path(), Some(&kek_path));
        assert!(ok.iter().all(|c| c.status == Status::Ok), "{ok:?}");
        std::fs::set_permissions(&kek_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let id = dir.path().join(IDENTITY_FILE);
        std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o640)).unwrap();
        let bad = check_keys(dir.path(), Some(&kek_path));
        assert_eq!(
            bad.iter().filter(|c| c.status == Status::Fail).count(),
            2,
            "{bad:?}"
        );
    }
}
