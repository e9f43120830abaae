#!/bin/sh
# Prepares a machine for the flashgate-station service: the `flashgate` system user (groups
# plugdev, dialout), /etc/flashgate, and the station KEK as a systemd credential. Idempotent;
# it never replaces an existing KEK (the KEK seals the enrolled identity: a new one would
# orphan it). Run as root by deploy/station/install.sh and by the Debian package's postinst.
set -eu
log() { printf 'flashgate-station: %s\n' "$*"; }

# Service user: system account, no login shell, no home of its own; probe and serial groups.
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
install -d -m 0750 -o root -g flashgate /etc/flashgate
if [ -e /etc/flashgate/station.toml ]; then
  chown root:flashgate /etc/flashgate/station.toml
  chmod 0640 /etc/flashgate/station.toml
fi

# Station KEK as a systemd credential, made once.
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
