// `vfio-user check` as a user runs it: a server process, the check command
// as another, exit status and output lines judged. It passes against the
// three samples and fails, naming the defects, against a broken server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../../cli/main.js';
import { ALL_CASES, GROUPS } from '../../tools/check/index.js';

const entry = fileURLToPath(new URL('../../cli/run.ts', import.meta.url));
const brokenServer = fileURLToPath(new URL('../fixtures/broken-server.ts', import.meta.url));

function start(args: string[]): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = spawn(process.execPath, ['--import', 'tsx', entry, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) => p.on('exit', (code) => resolve({ code: code ?? 1, out, err })));
}

async function waitFor(path: string): Promise<void> {
  for (let i = 0; i < 1000 && !existsSync(path); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(existsSync(path), `${path} never appeared`);
}

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await done;
}

/** Case lines (one per case) and the totals line. */
function parse(out: string): { lines: string[]; totals: string } {
  const all = out.trimEnd().split('\n');
  return { lines: all.slice(0, -1), totals: all.at(-1)! };
}

async function checkSample(name: string, serverArgs: (sock: string, dir: string) => string[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `vfu-check-${name}-`));
  const sock = join(dir, 'dev.sock');
  const server = start([entry, ...serverArgs(sock, dir)]);
  try {
    await waitFor(sock);
    const r = await run(['check', sock, '--pid', String(server.pid)]);
    const { lines, totals } = parse(r.out);
    assert.equal(lines.length, ALL_CASES.length, `one line per case\n${r.out}${r.err}`);
    for (const l of lines) assert.match(l, /^(PASS|FAIL|SKIP) {2}[a-z]+\/[a-z0-9-]+ {2}.+ {2}\[spec: /);
    assert.match(totals, /^\d+ passed, 0 failed, \d+ skipped$/, r.out);
    assert.equal(r.code, 0, r.out + r.err);
    // Skips are only for what the device does not have, never for the core groups.
    const skipped = lines.filter((l) => l.startsWith('SKIP')).map((l) => l.split('  ')[1]!);
    for (const id of skipped) assert.doesNotMatch(id, /^(negotiation|header|dma|disconnect)\//, `skipped ${id}`);
  } finally {
    await stop(server);
    rmSync(dir, { recursive: true, force: true });
  }
}

test('check passes against the timer sample (every group, fd counting on)', { timeout: 120_000 }, async () => {
  await checkSample('timer', (sock) => ['server', '--keep', sock]);
});

test('check passes against the GPIO sample', { timeout: 120_000 }, async () => {
  await checkSample('gpio', (sock) => ['gpio', sock]);
});

test('check passes against the NVMe sample', { timeout: 120_000 }, async () => {
  await checkSample('nvme', (sock, dir) => ['nvme', '--backing', join(dir, 'ns.img'), '--size', '16M', sock]);
});

test('check fails against a broken server and names each defect', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-check-broken-'));
  const sock = join(dir, 'dev.sock');
  const server = start([brokenServer, sock]);
  try {
    await waitFor(sock);
    const r = await run(['check', sock, '--pid', String(server.pid)]);
    assert.equal(r.code, 1, r.out + r.err);
    const { lines, totals } = parse(r.out);
    const failed = new Set(lines.filter((l) => l.startsWith('FAIL')).map((l) => l.split('  ')[1]));
    // One case per defect, each failing for its own reason.
    assert.ok(failed.has('header/no-reply-write'), `posted-reply not caught\n${r.out}`);
    assert.match(r.out, /FAIL {2}header\/no-reply-write .* the posted write was answered/);
    assert.ok(failed.has('dma/overlap'), `overlap-ok not caught\n${r.out}`);
    assert.ok(failed.has('fds/irq-eventfds-released'), `leak-fds not caught\n${r.out}`);
    assert.match(r.out, /still held after de-assignment/);
    // Defect-free areas still pass: the failures are the defects, not noise.
    for (const id of ['negotiation/qemu-request', 'dma/partial-unmap', 'config/bar-sizing']) assert.match(r.out, new RegExp(`PASS {2}${id} `));
    const m = /^(\d+) passed, (\d+) failed, (\d+) skipped$/.exec(totals);
    assert.ok(m, totals);
    assert.equal(Number(m[2]), failed.size);
  } finally {
    await stop(server);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--restart starts a server that exits after each client again', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-check-restart-'));
  const sock = join(dir, 'dev.sock');
  try {
    // The timer sample without --keep exits when its client leaves, as libvfio-user's does.
    const cmd = `exec '${process.execPath}' --import tsx '${entry}' server {sock}`;
    const r = await run(['check', sock, '--only', 'info', '--restart', cmd, '--json']);
    const rows = r.out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const totals = rows.pop()!;
    assert.equal(totals.failed, 0, r.out + r.err);
    assert.ok((totals.passed as number) >= 6, r.out);
    assert.ok(rows.length >= 6 && rows.every((x) => x.group === 'info'));
    assert.equal(r.code, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without --restart, a server that exits after its client fails every case once, naming when it went', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-check-gone-'));
  const sock = join(dir, 'dev.sock');
  // The timer sample without --keep: discovery is its only client.
  const server = start([entry, 'server', sock]);
  try {
    await waitFor(sock);
    const r = await run(['check', sock, '--only', 'info']);
    assert.equal(r.code, 1, r.out + r.err);
    const { lines, totals } = parse(r.out);
    // Cases that need no connection pass on what discovery learnt; the others fail, the cause named once.
    assert.equal(lines.filter((l) => / the server stopped accepting clients after discovery/.test(l) && !/not run/.test(l)).length, 1, r.out);
    assert.ok(lines.filter((l) => /^FAIL .* not run: the server stopped accepting clients after discovery/.test(l)).length >= 2, r.out);
    const m = /^(\d+) passed, (\d+) failed, 0 skipped$/.exec(totals);
    assert.ok(m && Number(m[2]) >= 4, totals);
  } finally {
    await stop(server);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--list names every case with its spec section; bad usage exits 2', async () => {
  let out = '';
  let err = '';
  const io = { out: (s: string) => void (out += s), err: (s: string) => void (err += s) };
  assert.equal(await main(['check', '--list'], io), 0);
  const lines = out.trim().split('\n');
  assert.equal(lines.length, ALL_CASES.length + 1);
  assert.equal(new Set(ALL_CASES.map((c) => c.id)).size, ALL_CASES.length, 'case ids are unique');
  for (const g of GROUPS) assert.ok(ALL_CASES.some((c) => c.group === g), `group ${g} has cases`);
  for (const c of ALL_CASES) assert.match(c.spec, /spec: /, `${c.id} names a spec section`);
  out = '';
  assert.equal(await main(['check', '--list', '--only', 'dma'], io), 0);
  assert.ok(out.trim().split('\n').slice(0, -1).every((l) => l.startsWith('dma/')));
  assert.equal(await main(['check', '--only', 'nonsense', '/nowhere'], io), 2);
  assert.match(err, /unknown group 'nonsense'/);
  err = '';
  assert.equal(await main(['check'], io), 2);
  assert.match(err, /expected one SOCKET/);
  err = '';
  assert.equal(await main(['check', '/nonexistent/vfio-user.sock'], io), 1);
  assert.match(err, /cannot discover the device/);
});
