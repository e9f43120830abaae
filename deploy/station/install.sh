#!/usr/bin/env bash
# Installs flashgate-station as a systemd service on a Debian / Raspberry Pi OS (bookworm)
# machine. Idempotent: re-running upgrades the binary, loader, unit, udev rules and helper,
# and never touches an existing station.toml, KEK or state directory.
#
#   sudo deploy/station/install.sh --binary PATH [--loader PATH] [--enable]
#
#   --binary   the flashgate-station executable for this machine (for a Pi:
#              target/aarch64-unknown-linux-gnu/release/flashgate-station, see docs/operations.md)
#   --loader   the flash loader (default target/firmware/loader.bin if present)
#   --enable   enable and (re)start the service now (default: only install; edit
#              /etc/flashgate/station.toml, enrol, get approved, then `systemctl enable --now`)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

BINARY=""
LOADER=""
ENABLE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BINARY=$2; shift 2 ;;
    --loader) LOADER=$2; shift 2 ;;
    --enable) ENABLE=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { printf 'station-install: %s\n' "$*"; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo)"
command -v systemctl >/dev/null || die "systemd is required"
[ -n "$BINARY" ] || die "--binary PATH is required"
[ -x "$BINARY" ] || die "$BINARY is not an executable"
if [ -z "$LOADER" ] && [ -f "$ROOT/target/firmware/loader.bin" ]; then
  LOADER=$ROOT/target/firmware/loader.bin
fi

# 1. Service user: system account, no login shell, no home of its own; probe and serial groups.
if ! getent group flashgate >/dev/null; then
  groupadd --system flashgate
  log "created group flashgate"
fi
if ! id flashgate >/dev/null 2>&1; then
  useradd --system --gid flashgate --home-dir /var/lib/flashgate-station --no-create-home \
    --shell /usr/sbin/nologin --comment "flashgate station" flashgate
  log "created user flashgate"
fi
for g in plugdev dialout; do
  getent group "$g" >/dev/null || groupadd --system "$g"
  id -nG flashgate | tr ' ' '\n' | grep -qx "$g" || { usermod -aG "$g" flashgate; log "added flashgate to $g"; }
done

# 2. Files.
install -D -m 0755 "$BINARY" /usr/local/bin/flashgate-station
install -D -m 0755 "$HERE/flashgate-station-admin" /usr/local/sbin/flashgate-station-admin
if [ -n "$LOADER" ]; then
  install -D -m 0644 "$LOADER" /usr/share/flashgate/loader.bin
elif [ ! -f /usr/share/flashgate/loader.bin ]; then
  log "warning: no loader installed: pass --loader (built by cargo xtask firmware)"
fi
install -D -m 0644 "$ROOT/docs/operations.md" /usr/share/doc/flashgate/operations.md 2>/dev/null || true
install -d -m 0750 -o root -g flashgate /etc/flashgate
if [ ! -e /etc/flashgate/station.toml ]; then
  install -m 0640 -o root -g flashgate "$HERE/station.toml.example" /etc/flashgate/station.toml
  log "wrote /etc/flashgate/station.toml from the example: edit coordinator, vendor key, probes"
fi

# 3. Station KEK as a systemd credential (made once; it seals the station identity, so a new
#    one would orphan the enrolled identity).
if command -v systemd-creds >/dev/null; then
  install -d -m 0700 /etc/credstore.encrypted
  if [ ! -e /etc/credstore.encrypted/flashgate-station-kek ]; then
    head -c 32 /dev/urandom | od -An -tx1 -v | tr -d ' \n' |
      systemd-creds encrypt --name=station-kek - /etc/credstore.encrypted/flashgate-station-kek
    chmod 0600 /etc/credstore.encrypted/flashgate-station-kek
    log "made the station KEK: /etc/credstore.encrypted/flashgate-station-kek (systemd-creds, bound to this machine)"
  fi
  rm -f /etc/systemd/system/flashgate-station.service.d/10-plain-credential.conf
else
  # No systemd-creds (systemd < 250): a root-only plain file, passed with LoadCredential=.
  install -d -m 0700 /etc/credstore
  if [ ! -e /etc/credstore/flashgate-station-kek ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 -v | tr -d ' \n' > /etc/credstore/flashgate-station-kek)
    log "made the station KEK: /etc/credstore/flashgate-station-kek (plain, root-only: no systemd-creds here)"
  fi
  install -d -m 0755 /etc/systemd/system/flashgate-station.service.d
  cat > /etc/systemd/system/flashgate-station.service.d/10-plain-credential.conf <<'CONF'
[Service]
LoadCredentialEncrypted=
LoadCredential=station-kek:/etc/credstore/flashgate-station-kek
CONF
fi

# 4. udev rules for USB debug probes.
install -D -m 0644 "$HERE/70-flashgate-probes.rules" /etc/udev/rules.d/70-flashgate-probes.rules
if command -v udevadm >/dev/null; then
  udevadm control --reload || true
  udevadm trigger --subsystem-match=usb --subsystem-match=tty || true
fi

# 5. Unit.
install -D -m 0644 "$HERE/flashgate-station.service" /etc/systemd/system/flashgate-station.service
systemctl daemon-reload
if [ "$ENABLE" -eq 1 ]; then
  systemctl enable flashgate-station.service
  systemctl restart flashgate-station.service
  log "flashgate-station enabled and (re)started: journalctl -u flashgate-station -f"
else
  log "installed. Next:"
  log "  1. edit /etc/flashgate/station.toml"
  log "  2. flashgate-station-admin enrol      (prints the fingerprint)"
  log "  3. operator: flashgate station approve <fingerprint>"
  log "  4. systemctl enable --now flashgate-station"
fi
