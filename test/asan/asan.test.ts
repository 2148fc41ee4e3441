// The AddressSanitizer pass as part of the suite: scripts/test-asan.sh builds
// an ASan copy of the addon and runs the addon's tests and a short socket
// fuzz campaign on it (node with libasan preloaded). Any ASan report fails it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../../scripts/test-asan.sh', import.meta.url));

test('addon tests and a socket fuzz campaign under AddressSanitizer', { timeout: 15 * 60_000 }, async () => {
  const { code, out } = await new Promise<{ code: number; out: string }>((resolve) => {
    // A nested `node --test` skips its files when it sees it runs inside a test.
    const env: NodeJS.ProcessEnv = { ...process.env, TEST_REPORTER: 'tap' };
    delete env.NODE_TEST_CONTEXT;
    const p = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (c) => resolve({ code: c ?? 1, out }));
  });
  assert.equal(code, 0, out.slice(-8000));
  assert.match(out, /test-asan: OK/);
  assert.doesNotMatch(out, /ERROR: AddressSanitizer/);
});
