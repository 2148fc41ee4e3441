#!/usr/bin/env node
// Round trip of a 16-byte message through the native addon between two
// processes: this process listens on a UNIX socket path, a child connects and
// echoes; both sides are driven by native.Poller callbacks in JS.
//
//   node bench/native-roundtrip.mjs [roundTrips=50000] [runs=5]
//   taskset -c 0 node bench/native-roundtrip.mjs      (both processes on one CPU)
//
// Prints the mean per round trip of each run and the median over runs.
// VFIO_USER_NATIVE_PATH overrides the addon path (as in src/native/binding.ts).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const addonPath =
  process.env.VFIO_USER_NATIVE_PATH ||
  fileURLToPath(new URL('../build/Release/vfio_user_native.node', import.meta.url));
const n = require(addonPath);
const MSG = 16;

/** Reads exactly MSG bytes into buf as they arrive; calls onMessage per message. */
function pump(fd, onMessage, onEof) {
  const buf = new Uint8Array(MSG);
  const fdsOut = new Int32Array(2 + 8);
  let have = 0;
  const poller = new n.Poller(fd, (status) => {
    if (status < 0) throw new Error(`poll error ${status}`);
    for (;;) {
      const r = n.recvmsg(fd, buf, have, MSG - have, fdsOut);
      if (r < 0) return;
      if (r === 0) {
        poller.close();
        onEof();
        return;
      }
      have += r;
      if (have === MSG) {
        have = 0;
        onMessage(buf);
      }
    }
  });
  poller.start(n.READABLE);
  return poller;
}

function send(fd, buf) {
  const w = n.sendmsg(fd, buf, 0, buf.length, null);
  if (w !== buf.length) throw new Error(`short send ${w}`); // 16 bytes never block here
}

if (process.argv[2] === '--child') {
  const fd = n.connect(process.argv[3]);
  pump(
    fd,
    (buf) => send(fd, buf),
    () => n.close(fd),
  );
} else {
  const total = Number(process.argv[2] ?? 50000);
  const runs = Number(process.argv[3] ?? 5);
  const dir = mkdtempSync(join(tmpdir(), 'vfio-rt-'));
  const path = join(dir, 'sock');
  const lfd = n.listen(path, 0o600, 1);
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', path], { stdio: 'inherit' });
  const accepted = await new Promise((resolve) => {
    const p = new n.Poller(lfd, () => {
      const c = n.accept(lfd);
      if (c < 0) return;
      p.close();
      resolve(c);
    });
    p.start(n.READABLE);
  });
  const fd = accepted;
  const msg = new Uint8Array(MSG).fill(7);
  let remaining = 0;
  let done = null;
  const poller = pump(
    fd,
    () => {
      if (--remaining > 0) send(fd, msg);
      else done();
    },
    () => {},
  );
  const run = (count) =>
    new Promise((resolve) => {
      remaining = count;
      const t0 = process.hrtime.bigint();
      done = () => resolve(Number(process.hrtime.bigint() - t0) / count / 1000);
      send(fd, msg);
    });
  await run(Math.min(5000, total)); // warm-up
  const results = [];
  for (let i = 0; i < runs; i++) results.push(await run(total));
  poller.close();
  n.shutdown(fd, 2);
  n.close(fd);
  n.close(lfd);
  await new Promise((r) => child.on('exit', r));
  rmSync(dir, { recursive: true, force: true });
  const sorted = [...results].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  console.log(
    `16-byte round trip, ${runs} runs x ${total}: ${results.map((x) => x.toFixed(2)).join(' ')} us; median ${median.toFixed(2)} us`,
  );
}
