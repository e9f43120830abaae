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

# 1. Service user, /etc/flashgate, station KEK (shared with the Debian package's postinst).
sh "$HERE/host-setup.sh"

# 2. Files.
install -D -m 0755 "$BINARY" /usr/local/bin/flashgate-station
install -D -m 0755 "$HERE/flashgate-station-admin" /usr/local/sbin/flashgate-station-admin
if [ -n "$LOADER" ]; then
  install -D -m 0644 "$LOADER" /usr/share/flashgate/loader.bin
elif [ ! -f /usr/share/flashgate/loader.bin ]; then
  log "warning: no loader installed: pass --loader (built by cargo xtask firmware)"
fi
install -D -m 0644 "$ROOT/docs/operations.md" /usr/share/doc/flashgate/operations.md 2>/dev/null || true
if [ ! -e /etc/flashgate/station.toml ]; then
  install -m 0640 -o root -g flashgate "$HERE/station.toml.example" /etc/flashgate/station.toml
  log "wrote /etc/flashgate/station.toml from the example: edit coordinator, vendor key, probes"
fi

# 3. udev rules for USB debug probes.
install -D -m 0644 "$HERE/70-flashgate-probes.rules" /etc/udev/rules.d/70-flashgate-probes.rules
if command -v udevadm >/dev/null; then
  udevadm control --reload || true
  udevadm trigger --subsystem-match=usb --subsystem-match=tty || true
fi

# 4. Unit.
install -D -m 0644 "$HERE/flashgate-station.service" /etc/systemd/system/flashgate-station.service
systemctl daemon-reload
if [ "$ENABLE" -eq 1 ]; then
  systemctl enable flashgate-station.service
  systemctl restart flashgate-station.service
  log "flashgate-station enabled and (re)started: journalctl -u flashgate-station -f"
else
  log "installed. Next:"
  log "  1. edit /etc/flashgate/station.toml"
  log "  2. flashgate-station-admin enrol --bundle FILE   (the bundle from your operator; prints the fingerprint)"
  log "  3. operator: flashgate station approve <fingerprint>"
  log "  4. systemctl enable --now flashgate-station"
fi
