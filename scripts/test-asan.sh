#!/usr/bin/env bash
# AddressSanitizer pass (npm run test:asan): builds an ASan copy of the addon
# in build-asan/ (native/build-asan.sh; the regular build/ is untouched), then
# runs the addon's own tests and a short socket-fuzzer campaign with node under
# a preloaded libasan and VFIO_USER_NATIVE_PATH pointing at the ASan build.
# Leak detection is off (LeakSanitizer reports V8/Node's own allocations);
# every other ASan report aborts the process, and this script fails if any
# run fails or any "ERROR: AddressSanitizer" line appears in the output.
#   bash scripts/test-asan.sh            (FUZZ_MESSAGES=N to change the campaign, default 20000)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
libasan=$(gcc -print-file-name=libasan.so)
if [ ! -e "$libasan" ] || [ "$libasan" = libasan.so ]; then
  echo "test-asan: libasan not found (apt-get install libasan8 or gcc)" >&2
  exit 1
fi
out="$root/build-asan"
bash native/build-asan.sh "$out" >/dev/null || { echo "test-asan: ASan build failed" >&2; exit 1; }
addon="$out/build/Release/vfio_user_native.node"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export LD_PRELOAD="$libasan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1:detect_odr_violation=0"
export VFIO_USER_NATIVE_PATH="$addon"
export FUZZ_MESSAGES="${FUZZ_MESSAGES:-20000}"
status=0
node scripts/test.mjs test/native/*.test.ts test/fuzz/socket-fuzz.test.ts 2>&1 | tee "$log" || status=1
if grep -q 'ERROR: AddressSanitizer' "$log"; then
  echo "test-asan: AddressSanitizer reported an error" >&2
  status=1
fi
# The fuzz server process must have run on the ASan addon too.
if ! grep -q 'fuzz: OK' "$log"; then
  echo "test-asan: the fuzz campaign did not report OK" >&2
  status=1
fi
[ $status -eq 0 ] && echo "test-asan: OK (addon $addon, $libasan)"
exit $status
