// The short, seeded socket-fuzzer campaign of the test suite (about a
// minute): a real server process with the timer and GPIO samples under
// hostile clients; afterwards it must serve a clean client, hold no more fds
// than at the start, and keep its memory bounded. Runs scripts/fuzz.mjs in a
// child so that a hung server fails the test instead of hanging it.
// FUZZ_MESSAGES and FUZZ_SEED override the defaults (the ASan pass uses them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

test('socket fuzzer: short seeded campaign against a server process', { timeout: 240000 }, () => {
  const messages = process.env.FUZZ_MESSAGES ?? '400000';
  const seed = process.env.FUZZ_SEED ?? '20261125';
  const res = spawnSync(process.execPath, ['scripts/fuzz.mjs', '--messages', messages, '--seed', seed, '--time', '180', '--progress', '0'], {
    cwd: root,
    encoding: 'utf8',
    env: process.env,
    timeout: 230000,
    maxBuffer: 64 * 1048576,
  });
  const summary = res.stderr.split('\n').filter((l) => l.startsWith('fuzz:')).join('\n');
  assert.equal(res.status, 0, `fuzzer failed (status ${res.status}, signal ${res.signal}):\n${summary}\n${res.stdout.slice(-3000)}`);
  const r = JSON.parse(res.stdout) as { messages: number; crashed: boolean; failures: string[]; server: { fdBaseline: number; fdEnd: number }; checks: number };
  assert.equal(r.crashed, false);
  assert.deepEqual(r.failures, []);
  assert.equal(r.server.fdEnd, r.server.fdBaseline);
  assert.ok(r.messages >= Number(messages) * 0.99, `${r.messages} messages sent`);
  assert.ok(r.checks >= 2);
  process.stderr.write(summary + '\n');
});
