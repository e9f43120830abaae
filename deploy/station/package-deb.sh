#!/usr/bin/env bash
# Builds the flashgate-station Debian package (dpkg-deb only; no cargo-deb needed):
# the station binary (stripped), the flash loader, the systemd unit, udev rules for USB debug
# probes, the admin helper, an example configuration (a conffile) and the docs.
#
#   deploy/station/package-deb.sh --binary PATH --loader PATH [--version V] [--out DIR]
#
#   --binary   the flashgate-station executable (e.g. target/release/flashgate-station)
#   --loader   the flash loader, target/firmware/loader.bin (cargo xtask firmware)
#   --version  package version (default: the workspace version in Cargo.toml)
#   --out      where the .deb goes (default: target/debian)
#
# Installing it (`dpkg -i flashgate-station_*.deb`) makes the `flashgate` user and the station
# KEK credential (deploy/station/host-setup.sh) and installs the unit without enabling it: the
# station must be enrolled and approved first (docs/operations.md).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

BINARY=""
LOADER=""
VERSION=""
OUT="$ROOT/target/debian"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BINARY=$2; shift 2 ;;
    --loader) LOADER=$2; shift 2 ;;
    --version) VERSION=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "package-deb.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
die() { printf 'package-deb: error: %s\n' "$*" >&2; exit 1; }
[ -n "$BINARY" ] || die "--binary PATH is required"
[ -x "$BINARY" ] || die "$BINARY is not an executable"
[ -n "$LOADER" ] || die "--loader PATH is required (target/firmware/loader.bin, from cargo xtask firmware)"
[ -f "$LOADER" ] || die "$LOADER does not exist"
command -v dpkg-deb >/dev/null || die "dpkg-deb is required"
if [ -z "$VERSION" ]; then
  VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)
fi
ARCH=$(dpkg --print-architecture)

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
P="$STAGE/flashgate-station_${VERSION}_${ARCH}"
install -d "$P/DEBIAN"
# Installed paths are /usr/bin and /usr/sbin (install.sh uses /usr/local for hand installs).
install -D -m 0755 "$BINARY" "$P/usr/bin/flashgate-station"
strip --strip-debug "$P/usr/bin/flashgate-station"
sed 's#/usr/local/bin/flashgate-station#/usr/bin/flashgate-station#' "$HERE/flashgate-station-admin" \
  > "$STAGE/admin" && install -D -m 0755 "$STAGE/admin" "$P/usr/sbin/flashgate-station-admin"
install -D -m 0644 "$LOADER" "$P/usr/share/flashgate/loader.bin"
sed 's#/usr/local/bin/flashgate-station#/usr/bin/flashgate-station#' "$HERE/flashgate-station.service" \
  > "$STAGE/unit" && install -D -m 0644 "$STAGE/unit" "$P/usr/lib/systemd/system/flashgate-station.service"
install -D -m 0644 "$HERE/70-flashgate-probes.rules" "$P/usr/lib/udev/rules.d/70-flashgate-probes.rules"
install -D -m 0755 "$HERE/host-setup.sh" "$P/usr/lib/flashgate-station/host-setup"
install -D -m 0640 "$HERE/station.toml.example" "$P/etc/flashgate/station.toml"
install -D -m 0644 "$ROOT/docs/operations.md" "$P/usr/share/doc/flashgate/operations.md"
install -D -m 0644 "$ROOT/docs/probes.md" "$P/usr/share/doc/flashgate/probes.md"
install -d "$P/usr/share/doc/flashgate-station"
cat > "$P/usr/share/doc/flashgate-station/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: flashgate
License: $(sed -n 's/^license = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)
COPY

SIZE=$(du -sk --exclude=DEBIAN "$P" | cut -f1)
cat > "$P/DEBIAN/control" <<CONTROL
Package: flashgate-station
Version: $VERSION
Architecture: $ARCH
Maintainer: flashgate developers <flashgate@localhost>
Section: embedded
Priority: optional
Depends: libc6, libgcc-s1, passwd
Recommends: systemd (>= 250), udev
Installed-Size: $SIZE
Homepage: https://github.com/flashgate/flashgate
Description: flashgate factory station (provisioning over debug probes)
 Provisions boards at a contract factory under a quota the flashgate coordinator
 keeps exact: writes a RAM flash loader over the debug probe, relays the sealed
 per-chip keys and certificate, locks the debug port and reports each install.
 The service is installed but not enabled: enrol the station with the bundle
 from your operator (flashgate-station-admin enrol --bundle FILE), have it
 approved, then systemctl enable --now flashgate-station.
CONTROL
echo /etc/flashgate/station.toml > "$P/DEBIAN/conffiles"
cat > "$P/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  sh /usr/lib/flashgate-station/host-setup
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
  fi
  if command -v udevadm >/dev/null && [ -d /run/udev ]; then
    udevadm control --reload || true
    udevadm trigger --subsystem-match=usb --subsystem-match=tty || true
  fi
  if [ -z "$2" ]; then
    echo "flashgate-station: installed, not enabled. Next: edit /etc/flashgate/station.toml;"
    echo "  flashgate-station-admin enrol --bundle FILE; an operator approves the fingerprint;"
    echo "  systemctl enable --now flashgate-station"
  fi
fi
POSTINST
cat > "$P/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl disable --now flashgate-station.service || true
fi
PRERM
# The state directory (identity, journal with unreported installs) and the KEK are never
# removed, not even on purge: deleting them would lose installs not yet reported.
cat > "$P/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
  echo "flashgate-station: kept /var/lib/flashgate-station and the station KEK (the journal may hold unreported installs)"
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
POSTRM
chmod 0755 "$P/DEBIAN/postinst" "$P/DEBIAN/prerm" "$P/DEBIAN/postrm"

mkdir -p "$OUT"
DEB="$OUT/flashgate-station_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$P" "$DEB" >/dev/null
echo "$DEB"
