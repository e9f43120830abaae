#!/usr/bin/env bash
# Installs what flashgate needs on a fresh Debian machine (idempotent, non-interactive).
#
#   scripts/setup.sh            as root, or as a user with sudo
#
# - Debian packages: QEMU (the emulated board), the Arm GNU toolchain (linker, objcopy, size)
#   and newlib, gdb-multiarch, protoc (gRPC code generation), etcd (coordinator tests), make
#   (the C demo OS), openssl (an independent ed25519 signer in the image-tool tests) and
#   libfaketime (coordinator replicas with skewed clocks in the chaos tests).
#   `apt-get update` runs only when a package is missing.
# - A Cortex-M Rust toolchain: `rustup target add thumbv7em-none-eabi` where rustup can do
#   it; otherwise Debian's rustc with its library sources (rustc-web, rust-web-src,
#   cargo-web, rust-web-clippy), which `cargo xtask firmware` uses with -Zbuild-std.
set -euo pipefail

APT_PACKAGES=(
  qemu-system-arm
  gcc-arm-none-eabi
  libnewlib-arm-none-eabi
  gdb-multiarch
  protobuf-compiler
  etcd-server
  make
  openssl
  libfaketime
  # the console's browser tests (tests/tests/e2e/console.rs): headless Chromium over WebDriver
  chromium
  chromium-driver
  # … which trusts the test coordinator's CA through an NSS database made with certutil
  libnss3-tools
  # docs/getting-started.md reads the CLI's JSON with jq (its test runs the page)
  jq
  # the emulator's instruction-cut plugin and the fsync shim are built with the host cc; the
  # station package is stripped (binutils) and its unit checked with systemd-analyze
  gcc
  binutils
  systemd
)
DEBIAN_RUST_PACKAGES=(rustc-web rust-web-src cargo-web rust-web-clippy)
TARGET=thumbv7em-none-eabi

did=()
log() { printf 'setup: %s\n' "$*"; }

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  log "error: not root and no sudo: run this script as root"
  exit 1
fi
as_root() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive "$@"; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do
    installed "$p" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update (missing: ${missing[*]})"
    as_root apt-get update -q
    apt_updated=1
    did+=("apt-get update")
  fi
  log "apt-get install ${missing[*]}"
  as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
  did+=("installed ${missing[*]}")
}

apt_install "${APT_PACKAGES[@]}"

# Cortex-M Rust: rustup's prebuilt target if rustup works here, else Debian's toolchain.
rust_done=0
if command -v rustup >/dev/null 2>&1; then
  if rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    log "rustup target $TARGET already installed"
    rust_done=1
  elif rustup target add "$TARGET"; then
    did+=("rustup target add $TARGET")
    rust_done=1
  else
    log "rustup could not add $TARGET; falling back to Debian's rustc with rust-src"
  fi
fi
if [ "$rust_done" -eq 0 ]; then
  apt_install "${DEBIAN_RUST_PACKAGES[@]}"
fi

# cargo-fuzz drives the fuzz targets (scripts/fuzz.sh); libFuzzer itself is built from the
# libfuzzer-sys crate with the system C++ compiler (g++, installed here if missing).
if cargo fuzz --version >/dev/null 2>&1; then
  log "cargo-fuzz already installed"
else
  log "cargo install cargo-fuzz"
  cargo install --locked cargo-fuzz
  did+=("cargo install cargo-fuzz")
fi
if ! command -v c++ >/dev/null 2>&1; then
  apt_install g++
fi

if [ ${#did[@]} -eq 0 ]; then
  log "nothing to do: everything was already installed"
else
  log "done:"
  for d in "${did[@]}"; do
    log "  - $d"
  done
fi
# Python tools for the Helm chart checks (helm library, schema validator, checkov).
"$(dirname "$0")/../deploy/helm/setup-venv.sh"
log "next: cargo xtask firmware"
