// `vfio-user trace`: the sample demo (timer server, client, live migration)
// through the proxy as three processes; the whole conformance suite through
// it (malformed messages, oversize bodies, fds, disconnects: forwarded
// unchanged); the twin socket interposed; decoding, filters and summary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../../cli/main.js';
import { VfioUserClient } from '../../src/client/index.js';
import { DeviceContext } from '../../src/server/context.js';
import { Command } from '../../src/protocol/commands.js';
import { FLAG_ERROR, FLAG_NO_REPLY, TYPE_REPLY } from '../../src/protocol/header.js';
import { encodeRegionReadRequest } from '../../src/protocol/region-access.js';
import { TraceProxy, decodePayload, formatEvent, formatSummary, parseFilter, percentile, SummaryBuilder, type TraceEvent } from '../../tools/trace/index.js';
import { enableBusMaster, randomBytes, sampleDevice } from '../client/rig.js';

const entry = fileURLToPath(new URL('../../cli/run.ts', import.meta.url));

function spawnCli(args: string[]): { p: ChildProcess; done: Promise<{ code: number; out: string; err: string }> } {
  const p = spawn(process.execPath, ['--import', 'tsx', entry, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return { p, done: new Promise((resolve) => p.on('exit', (code) => resolve({ code: code ?? 1, out, err }))) };
}

async function waitFor(path: string): Promise<void> {
  for (let i = 0; i < 1000 && !existsSync(path); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(existsSync(path), `${path} never appeared`);
}

test('the sample demo through trace: every command and the migration decoded, replies timed, summary at exit', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-trace-demo-'));
  const server = spawnCli(['server', join(dir, 'dev.sock')]);
  try {
    await waitFor(join(dir, 'dev.sock'));
    const trace = spawnCli(['trace', '--json', '--once', '--out', join(dir, 'trace.jsonl'), '--listen', join(dir, 'proxy.sock'), '--connect', join(dir, 'dev.sock')]);
    await waitFor(join(dir, 'proxy.sock'));
    const client = await spawnCli(['client', join(dir, 'proxy.sock')]).done;
    assert.equal(client.code, 0, client.out + client.err);
    assert.match(client.out, /All checks passed/);
    assert.match(client.out, /interrupt programmed on the source delivered by the destination/);
    const t = await trace.done;
    assert.equal(t.code, 0, t.err);
    assert.equal((await server.done).code, 0, 'the source server exits 0 once the traced client leaves');
    const lines = readFileSync(join(dir, 'trace.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = (lines.pop() as { summary: { sessions: number; commands: { name: string; commands: number; p50?: number }[] } }).summary;
    const ev = lines as unknown as TraceEvent[];
    const of = (name: string, kind: 'command' | 'reply') => ev.filter((e) => e.name === name && e.kind === kind);
    // Negotiation, decoded.
    assert.equal(ev[0]!.name, 'VERSION');
    assert.equal(ev[0]!.dir, 'c>s');
    assert.match(String(ev[0]!.payload.json), /"capabilities"/);
    assert.equal(of('VERSION', 'reply')[0]!.payload.version, '0.2');
    // Region info with the BAR1 fd and sparse caps; the bad region probe as an errno name.
    assert.ok(of('DEVICE_GET_REGION_INFO', 'reply').some((e) => e.fds === 1 && Array.isArray(e.payload.caps)));
    assert.ok(of('REGION_READ', 'reply').some((e) => e.error === 'EINVAL'));
    // IRQs: the eventfd handed over is counted; DMA maps with their ranges; the server's own DMA requests.
    assert.ok(of('DEVICE_SET_IRQS', 'command').some((e) => e.fds >= 1 && e.payload.op === 'EVENTFD|TRIGGER'));
    assert.ok(of('DMA_MAP', 'command').some((e) => typeof e.payload.address === 'string' && e.payload.fd === true));
    assert.ok(of('DMA_WRITE', 'command').every((e) => e.dir === 's>c'));
    assert.ok(of('DMA_WRITE', 'command').length >= 1 && of('DMA_READ', 'command').length >= 1);
    // Migration states in order on the source, and the data it streamed.
    const states = of('DEVICE_FEATURE', 'command').filter((e) => e.payload.feature === 'MIG_DEVICE_STATE' && e.payload.ops === 'SET').map((e) => e.payload.state);
    assert.deepEqual(states.slice(0, 3), ['PRE_COPY', 'STOP_COPY', 'STOP']);
    assert.ok(of('MIG_DATA_READ', 'reply').some((e) => (e.payload.bytes as number) > 0));
    // Every reply to a command that wanted one is timed; ids pair up.
    const replies = ev.filter((e) => e.kind === 'reply');
    assert.ok(replies.length > 50);
    for (const r of replies) assert.equal(typeof r.latencyMs, 'number', `${r.name} reply ${r.id} has no latency`);
    assert.equal(replies.length, ev.filter((e) => e.kind === 'command' && !e.noReply).length);
    assert.equal(summary.sessions, 1);
    const rr = summary.commands.find((c) => c.name === 'REGION_WRITE')!;
    assert.ok(rr.commands > 0 && typeof rr.p50 === 'number');
  } finally {
    server.p.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the whole conformance suite passes through the proxy (bytes and fds forwarded unchanged)', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-trace-check-'));
  const server = spawnCli(['server', '--keep', join(dir, 'dev.sock')]);
  const trace = spawnCli(['trace', '--filter', 'DMA_MAP,version', '--listen', join(dir, 'proxy.sock'), '--connect', join(dir, 'dev.sock')]);
  try {
    await waitFor(join(dir, 'dev.sock'));
    await waitFor(join(dir, 'proxy.sock'));
    const r = await spawnCli(['check', join(dir, 'proxy.sock'), '--pid', String(server.p.pid)]).done;
    assert.match(r.out.trim().split('\n').at(-1)!, /^\d+ passed, 0 failed, \d+ skipped$/, r.out + r.err);
    assert.equal(r.code, 0);
    trace.p.kill('SIGTERM');
    const t = await trace.done;
    assert.equal(t.code, 0, t.err);
    const [body, summary] = t.out.split('summary: ');
    // --filter prints only those commands, the summary counts everything.
    const names = new Set(body!.trim().split('\n').map((l) => l.trim().split(/\s+/)[4]));
    assert.deepEqual([...names].sort(), ['DMA_MAP', 'VERSION']);
    assert.match(summary!, /^\d+ session\(s\)/);
    assert.match(summary!, /\nREGION_READ +\d+/);
    assert.ok(!existsSync(join(dir, 'proxy.sock')), 'the proxy removed its socket');
  } finally {
    trace.p.kill();
    server.p.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a twin socket is replaced by the proxy\'s own pair; DMA on it is traced and still arrives', { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-trace-twin-'));
  const ctx = new DeviceContext(sampleDevice());
  await ctx.listen(join(dir, 'dev.sock'));
  const events: TraceEvent[] = [];
  const proxy = new TraceProxy({ listen: join(dir, 'proxy.sock'), connect: join(dir, 'dev.sock'), onEvent: (e) => events.push(e) });
  proxy.listen();
  try {
    const client = await VfioUserClient.connect(join(dir, 'proxy.sock'), { twinSocket: true, maxDataXferSize: 1024 });
    assert.equal(client.serverCaps.twinSocket?.supported, true);
    await enableBusMaster(client);
    const mem = await client.createGuestMemory({ iova: 0x100000, size: 0x2000, useFd: false });
    const data = randomBytes(2500, 11);
    await ctx.dma.write(0x100000, data);
    assert.deepEqual(mem.bytes.subarray(0, 2500), data);
    assert.deepEqual(await ctx.dma.read(0x100001, 1000), data.subarray(1, 1001));
    assert.equal(client.stats.twinRequests, 4, 'the client saw the requests on its twin socket');
    const twin = events.filter((e) => e.socket === 'twin');
    assert.deepEqual(twin.filter((e) => e.kind === 'command').map((e) => `${e.dir} ${e.name}`), ['s>c DMA_WRITE', 's>c DMA_WRITE', 's>c DMA_WRITE', 's>c DMA_READ']);
    assert.equal(twin.filter((e) => e.kind === 'reply' && e.dir === 'c>s' && typeof e.latencyMs === 'number').length, 4);
    assert.equal(events.filter((e) => e.socket === 'main' && (e.name === 'DMA_WRITE' || e.name === 'DMA_READ')).length, 0);
    const gone = ctx.waitForDisconnect();
    await client.close();
    await gone;
    await proxy.idle();
    assert.equal(proxy.activeSessions, 0);
  } finally {
    await proxy.close();
    await ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('decoding: errors by name, posted writes, undecodable payloads, filters, percentiles', () => {
  const h = (command: number, flags: number, error = 0, size = 32) => ({ msgId: 5, command, flags, error, msgSize: size });
  assert.deepEqual(decodePayload(h(Command.REGION_READ, 0), encodeRegionReadRequest({ region: 2, offset: 0x10n, count: 4 }), 0), { region: 2, offset: '0x10', count: 4 });
  assert.deepEqual(decodePayload(h(Command.REGION_READ, TYPE_REPLY | FLAG_ERROR, 22, 16), new Uint8Array(0), 0), {});
  assert.match(String(decodePayload(h(Command.DEVICE_GET_INFO, TYPE_REPLY), new Uint8Array(3), 0).undecodable), /needs 16 bytes/);
  const line = formatEvent({ t: 1.5, session: 2, socket: 'main', dir: 'c>s', id: 7, cmd: 10, name: 'REGION_WRITE', kind: 'command', flags: FLAG_NO_REPLY, noReply: true, size: 40, fds: 0, payload: { region: 2, offset: '0x0', count: 8 } });
  assert.match(line, /^ +1\.500000 #2 c>s +7 REGION_WRITE +size=40 NO_REPLY region=2 offset=0x0 count=8$/);
  const err = formatEvent({ t: 0, session: 1, socket: 'twin', dir: 's>c', id: 9, cmd: 9, name: 'REGION_READ', kind: 'reply', flags: 0x21, noReply: false, size: 16, fds: 0, error: 'EINVAL', latencyMs: 0.25, payload: {} });
  assert.match(err, /#1 twin s>c +9 REGION_READ reply +size=16 ERROR EINVAL in 0\.250 ms$/);
  assert.deepEqual([...parseFilter('region_read, VFIO_USER_DMA_MAP,8,x_vm_interrupt')].sort((a, b) => a - b), [2, 8, 9, 0x7f01]);
  assert.throws(() => parseFilter('REGION_REED'), /unknown command 'REGION_REED'/);
  assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50), 5);
  assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99), 10);
  const s = new SummaryBuilder();
  s.add({ t: 0, session: 1, socket: 'main', dir: 'c>s', id: 1, cmd: 9, name: 'REGION_READ', kind: 'command', flags: 0, noReply: false, size: 32, fds: 0, payload: {} });
  s.add({ t: 0, session: 1, socket: 'main', dir: 's>c', id: 1, cmd: 9, name: 'REGION_READ', kind: 'reply', flags: 0x21, noReply: false, size: 16, fds: 0, error: 'EINVAL', latencyMs: 2, payload: {} });
  const sum = s.build();
  assert.deepEqual(sum.commands[0], { name: 'REGION_READ', commands: 1, posted: 0, errors: 1, bytes: 48, p50: 2, p90: 2, p99: 2, max: 2 });
  assert.match(formatSummary(sum), /REGION_READ +1 +0 +1 +48 +2\.000/);
});

test('trace usage: both sockets required, bad filters refused, the help says eventfd interrupts bypass the proxy', async () => {
  let out = '';
  let err = '';
  const io = { out: (s: string) => void (out += s), err: (s: string) => void (err += s) };
  assert.equal(await main(['trace', '--listen', '/tmp/x'], io), 2);
  assert.match(err, /--connect PATH are required/);
  assert.equal(await main(['trace', '--listen', '/tmp/x', '--connect', '/tmp/y', '--filter', 'NOPE'], io), 2);
  assert.match(err, /unknown command 'NOPE'/);
  assert.equal(await main(['trace', '--help'], io), 0);
  assert.match(out, /eventfds[\s\S]*bypass/);
});
