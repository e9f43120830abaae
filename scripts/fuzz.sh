#!/usr/bin/env bash
# The bounded fuzz run (CI calls it from scripts/test.sh): builds every target in fuzz/ and runs
# each for a fixed time over its committed corpus, one job each; fails on any crash, and prints
# per target its executions per second, corpus size and coverage.
#
#   scripts/fuzz.sh [--seconds N] [--build-only] [TARGET...]
#
#   --seconds N    run each target N seconds (default 15: 31 targets take under 8 minutes)
#   --build-only   build the targets, run nothing
#   TARGET...      only these (default: every file in fuzz/fuzz_targets/)
#
# Engine: libFuzzer through cargo-fuzz (libfuzzer-sys). The toolchain is stable; the
# sanitizer-coverage flags cargo-fuzz passes are unstable, so the build sets RUSTC_BOOTSTRAP=1
# for the fuzz workspace only (its own target dir, fuzz/target; the main build never sees it).
# No AddressSanitizer (`-s none`): the host crates forbid `unsafe` and the protocol crate has
# none, so what a target can find is a panic, an overflow (debug assertions are on), a hang or
# runaway memory — ASan would halve the speed for nothing.
#
# New inputs a run finds go to fuzz/corpus-run/ (ignored by git), never into the committed
# corpus; a crash leaves its input under fuzz/artifacts/<target>/: add it to fuzz/regressions/
# with a unit test in the crate that owns the parser, then fix the bug.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=15
build_only=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds)
      seconds="${2:?--seconds needs a number}"
      shift 2
      ;;
    --build-only)
      build_only=1
      shift
      ;;
    -h | --help)
      sed -n '2,12p' "$0"
      exit 0
      ;;
    -*)
      echo "fuzz.sh: unknown option $1 (see --help)" >&2
      exit 2
      ;;
    *)
      targets+=("$1")
      shift
      ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/fuzz_targets/*.rs; do
    targets+=("$(basename "$f" .rs)")
  done
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz is missing: run scripts/setup.sh" >&2
  exit 1
fi

echo "== fuzz: build (${#targets[@]} targets, libFuzzer, debug assertions on)"
# The main workspace's target dir would be the wrong place: these objects carry coverage
# instrumentation and would be rebuilt on every switch.
unset CARGO_TARGET_DIR
RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir fuzz --sanitizer none --debug-assertions
bin_dir=fuzz/target/x86_64-unknown-linux-gnu/release
if [ "$build_only" -eq 1 ]; then
  exit 0
fi

echo "== fuzz: ${seconds}s per target, one job each"
printf '%-28s %10s %12s %8s %8s %s\n' target execs/s executions corpus cov result
failed=()
for t in "${targets[@]}"; do
  seeds="fuzz/corpus/$t"
  work="fuzz/corpus-run/$t"
  artifacts="fuzz/artifacts/$t/"
  mkdir -p "$seeds" "$work" "$artifacts"
  log="$work.log"
  set +e
  # Past crashes run first, with the seeds: a fixed bug that comes back fails here too.
  regressions=()
  if [ -d "fuzz/regressions/$t" ]; then
    regressions=("fuzz/regressions/$t")
  fi
  "$bin_dir/$t" "$work" "$seeds" "${regressions[@]}" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="$artifacts" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  corpus=$(find "$work" "$seeds" -type f | xargs -r sha1sum | cut -d' ' -f1 | sort -u | wc -l)
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    result="CRASH (exit $rc): see $log and $artifacts"
    failed+=("$t")
  fi
  printf '%-28s %10s %12s %8s %8s %s\n' "$t" "${rate:-?}" "${execs:-?}" "$corpus" "${cov:-?}" "$result"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) crashed: ${failed[*]}" >&2
  for t in "${failed[@]}"; do
    echo "--- $t" >&2
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "fuzz/corpus-run/$t.log" | head -8 >&2 || true
  done
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each, no crash"
