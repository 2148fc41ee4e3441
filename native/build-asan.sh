#!/usr/bin/env bash
# Builds an AddressSanitizer copy of the addon outside the work tree (the
# regular build/Release stays untouched) and prints how to use it:
#   bash native/build-asan.sh [outdir=/tmp/vfio-user-asan]
# Node itself is not instrumented, so libasan must be preloaded. LeakSanitizer
# reports V8/Node allocations still live at exit (and node-addon-api's per-
# function data), so leak detection is off by default.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-/tmp/vfio-user-asan}
rm -rf "$out" && mkdir -p "$out"
cp -r "$root/native" "$out/"
ln -s "$root/node_modules" "$out/node_modules"
echo '{"name":"vfio-user-native-asan","version":"0.0.0","private":true}' > "$out/package.json"
node -e '
const g = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const t = g.targets[0];
t.cflags_cc = t.cflags_cc.filter((f) => f !== "-O2").concat(["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"]);
t.ldflags = ["-fsanitize=address"];
require("fs").writeFileSync(process.argv[2], JSON.stringify(g, null, 1));
' "$root/binding.gyp" "$out/binding.gyp"
gyp=$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js
(cd "$out" && node "$gyp" rebuild --nodedir=/usr --loglevel=error >/dev/null)
cat <<MSG
built $out/build/Release/vfio_user_native.node; run e.g.
  LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \\
  VFIO_USER_NATIVE_PATH=$out/build/Release/vfio_user_native.node node scripts/test.mjs test/native/*.test.ts
MSG
