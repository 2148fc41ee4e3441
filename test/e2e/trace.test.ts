// QEMU -> `vfio-user trace` -> the GPIO sample: a real QEMU 11.1 guest
// binds the stock gpio-pci-idio-16 driver through the proxy, and the trace
// shows QEMU's side of the session decoded (its VERSION, the realize-time
// reads, the INTx eventfd, BAR accesses, DMA maps of guest RAM).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createGpioDevice } from '../../samples/gpio-device.js';
import type { TraceEvent } from '../../tools/trace/index.js';
import { bootGuest, ensureHarness, findSection, HARMLESS_QEMU_LINES, parseGuestReport, qemuProblems } from './qemu.js';

const entry = fileURLToPath(new URL('../../cli/run.ts', import.meta.url));

const GUEST_SCRIPT = String.raw`
export G=/sys/class/gpio
export dev=$(for d in /sys/bus/pci/devices/*; do [ "$(cat $d/vendor)" = 0x494f ] && echo $d; done)
export bdf=$(basename $dev)
section load loadmod gpio-pci-idio-16
section bind sh -c 'echo driver=$(basename $(readlink $dev/driver)) enable=$(cat $dev/enable) irq=$(cat $dev/irq)'
export chip=$(for g in $G/gpiochip*; do [ "$(cat $g/label)" = "$bdf" ] && echo $g; done)
base=$(cat $chip/base)
echo $base > $G/export; echo $((base + 16)) > $G/export
section loopback sh -c 'echo 1 > $G/OUT0/value; a=$(cat $G/IIN0/value); echo 0 > $G/OUT0/value; b=$(cat $G/IIN0/value); echo high=$a low=$b'
`;

test('QEMU guest through vfio-user trace: the stock driver binds, the trace decodes QEMU\'s session', { timeout: 15 * 60_000 }, async () => {
  await ensureHarness();
  const dir = mkdtempSync(join(tmpdir(), 'vfu-e2e-trace-'));
  const sock = join(dir, 'gpio.sock');
  const proxySock = join(dir, 'proxy.sock');
  const out = join(dir, 'trace.jsonl');
  const dev = createGpioDevice();
  await dev.ctx.listen(sock);
  const trace = spawn(process.execPath, ['--import', 'tsx', entry, 'trace', '--json', '--once', '--out', out, '--listen', proxySock, '--connect', sock], { stdio: ['ignore', 'ignore', 'pipe'] });
  let traceErr = '';
  trace.stderr!.on('data', (d: Buffer) => (traceErr += d.toString()));
  const traceDone = new Promise<number>((r) => trace.on('exit', (c) => r(c ?? 1)));
  try {
    for (let i = 0; i < 1000 && !existsSync(proxySock); i++) await new Promise((r) => setTimeout(r, 20));
    const res = await bootGuest({ socket: proxySock, guestScript: GUEST_SCRIPT, timeoutMs: 240_000 });
    const report = parseGuestReport(res.console);
    const why = `\n--- console ---\n${res.console.slice(-6000)}\n--- qemu stderr ---\n${res.qemuStderr}\n--- trace stderr ---\n${traceErr}`;
    assert.equal(res.exitCode, 0, `QEMU exit ${res.exitCode}${why}`);
    assert.ok(report.done, `guest did not finish${why}`);
    assert.deepEqual(qemuProblems(res.qemuStderr, HARMLESS_QEMU_LINES), [], why);
    assert.match(findSection(report, 'bind')?.lines.join('\n') ?? '', /driver=pci-idio-16 enable=1/, why);
    assert.deepEqual(findSection(report, 'loopback')?.lines, ['high=1 low=0']);

    // QEMU powered off and closed the connection: trace --once wrote its summary and exited.
    assert.equal(await traceDone, 0, traceErr);
    const lines = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = lines.pop() as { summary: { sessions: number } };
    assert.equal(summary.summary.sessions, 1);
    const ev = lines as unknown as TraceEvent[];
    const cmds = (name: string) => ev.filter((e) => e.name === name && e.kind === 'command');
    // QEMU's VERSION request (0.0, its capabilities with spaces) and our reply.
    assert.equal(ev[0]!.name, 'VERSION');
    assert.equal(ev[0]!.payload.version, '0.0');
    assert.match(String(ev[0]!.payload.json), /"max_msg_fds": 16/);
    // Realize: device info, every region, every IRQ index, the whole config space.
    assert.ok(cmds('DEVICE_GET_INFO').length >= 1, 'no GET_INFO');
    const regionIdx = new Set(cmds('DEVICE_GET_REGION_INFO').map((e) => e.payload.index));
    for (const i of [0, 1, 2, 3, 4, 5, 7]) assert.ok(regionIdx.has(i), `no REGION_INFO for ${i}`);
    assert.ok(cmds('DEVICE_GET_IRQ_INFO').length >= 1, 'no IRQ_INFO');
    assert.ok(cmds('REGION_READ').some((e) => e.payload.region === 7 && (e.payload.count as number) >= 256), 'no whole-config read');
    // The driver: INTx through an eventfd (its signals bypass the proxy), accesses to the I/O BAR.
    assert.ok(cmds('DEVICE_SET_IRQS').some((e) => e.payload.index === 'INTx' && e.payload.op === 'EVENTFD|TRIGGER' && e.fds === 1), 'no INTx eventfd');
    assert.ok(cmds('REGION_WRITE').some((e) => e.payload.region === 2), 'no BAR2 write');
    assert.ok(cmds('REGION_READ').some((e) => e.payload.region === 2), 'no BAR2 read');
    assert.ok(cmds('DMA_MAP').length >= 1, 'no DMA_MAP of guest RAM');
    // Every command that wants a reply got one, timed.
    const waiting = ev.filter((e) => e.kind === 'command' && !e.noReply).length;
    const replies = ev.filter((e) => e.kind === 'reply');
    assert.equal(replies.length, waiting, 'a command without its reply');
    assert.ok(replies.every((r) => typeof r.latencyMs === 'number'), 'a reply without latency');
    console.log(`# e2e trace: ${ev.length} messages, ${replies.filter((r) => r.error).length} error replies, boot ${res.wallMs} ms`);
  } finally {
    trace.kill();
    await dev.ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
