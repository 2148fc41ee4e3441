// The README's "Attach a device to QEMU" section, run as written: the
// `vfio-user nvme` command starts the device (its file and socket moved to a
// temporary directory), and the `-m`, `-object`, `-machine` and `-device`
// arguments of its QEMU command line are passed verbatim to the harness's
// QEMU (the socket path substituted; binary, accelerator, kernel and initrd
// are the harness's own). Then every `# command` of the section's guest
// transcript runs in the guest and must print the lines shown under it.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { codeBlocks, shellCommands } from '../helpers/markdown.js';
import { bootGuest, ensureHarness, findSection, HARMLESS_QEMU_LINES, parseGuestReport, qemuProblems } from './qemu.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SECTION = 'Attach a device to QEMU';
/** QEMU options the harness supplies itself; the README may use them freely. */
const HARNESS_OWNS = new Set(['-accel', '-cpu', '-smp', '-nographic', '-kernel', '-initrd', '-append']);
/** QEMU options taken from the README verbatim. */
const FROM_README = new Set(['-m', '-object', '-machine', '-device']);

interface ReadmeQemu {
  server: string[];
  qemuArgs: string[];
  socket: string;
  transcript: { command: string; expected: string[] }[];
}

function readReadme(): ReadmeQemu {
  const blocks = codeBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8')).filter((b) => b.heading === SECTION);
  const sh = blocks.find((b) => b.lang === 'sh' && b.text.includes('qemu-system-x86_64'));
  assert.ok(sh, `README: no sh block with a QEMU command line under "## ${SECTION}"`);
  const cmds = shellCommands(sh.text);
  const server = cmds.find((c) => c[0] === 'vfio-user');
  const qemu = cmds.find((c) => c[0] === 'qemu-system-x86_64');
  assert.ok(server && qemu, 'README: the block starts the device and QEMU');
  const qemuArgs: string[] = [];
  for (let i = 1; i < qemu.length; i++) {
    const opt = qemu[i]!;
    if (opt === '-nographic') continue;
    const value = qemu[i + 1];
    assert.ok(value !== undefined, `README: ${opt} has no value`);
    i++;
    if (FROM_README.has(opt)) qemuArgs.push(opt, value);
    else assert.ok(HARNESS_OWNS.has(opt), `README: QEMU option ${opt} is neither tested nor supplied by the harness`);
  }
  // Guest RAM the device can map: a shared memfd backend, of -m's size, that the machine uses.
  const arg = (opt: string): string => qemuArgs[qemuArgs.indexOf(opt) + 1] ?? '';
  const backend = Object.fromEntries(arg('-object').split(',').slice(1).map((kv) => kv.split('=') as [string, string]));
  assert.match(arg('-object'), /^memory-backend-memfd,/, 'README: guest RAM from memory-backend-memfd');
  assert.equal(backend.share, 'on', 'README: the memfd is shared (share=on)');
  assert.equal(backend.size, arg('-m'), 'README: the backend is as large as -m');
  assert.ok(arg('-machine').split(',').includes(`memory-backend=${backend.id}`), 'README: the machine uses that backend');
  const device = arg('-device');
  const parsed = JSON.parse(device) as { driver: string; socket: { type: string; path: string } };
  assert.equal(parsed.driver, 'vfio-user-pci');
  const socket = parsed.socket.path;
  assert.equal(server[server.length - 1], socket, 'README: the device listens where QEMU connects');
  // The transcript: the unlabelled block after the sh one, "# command" then its output.
  const out = blocks.find((b) => b.lang === '' && b.line > sh.line);
  assert.ok(out, 'README: no guest transcript after the QEMU command line');
  const transcript: ReadmeQemu['transcript'] = [];
  for (const l of out.text.split('\n')) {
    if (l.startsWith('# ')) transcript.push({ command: l.slice(2), expected: [] });
    else if (l.trim() !== '') transcript.at(-1)?.expected.push(l);
  }
  assert.ok(transcript.length >= 2, 'README: the transcript shows commands');
  return { server, qemuArgs, socket, transcript };
}

/** `vfio-user ARGS` from the sources (the CLI's main), like bin/vfio-user.js in a checkout. */
function startCli(args: string[]): { child: ChildProcess; stderr: () => string } {
  const code = "const m = await import('./cli/main.ts'); process.exitCode = await m.main(process.argv.slice(1));";
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code, '--', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  return { child, stderr: () => err };
}

async function waitForSocket(path: string, child: ChildProcess, stderr: () => string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (existsSync(path) && statSync(path).isSocket()) return;
    if (child.exitCode !== null) throw new Error(`vfio-user exited with ${child.exitCode}: ${stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no socket at ${path} after 30 s: ${stderr()}`);
}

/** dmesg prints "[    3.141592] " before each line; the README shows the messages alone. */
const stripTime = (l: string): string => l.replace(/^\[\s*\d+\.\d+\]\s*/, '');

test("README: the QEMU command line attaches the NVMe sample and the guest shows what it says", { timeout: 5 * 60_000 }, async () => {
  const readme = readReadme();
  await ensureHarness();
  const dir = mkdtempSync(join(tmpdir(), 'vfu-readme-'));
  const sock = join(dir, 'nvme.sock');
  const serverArgs = readme.server.slice(1).map((a) => (a === readme.socket ? sock : a === 'disk.img' ? join(dir, 'disk.img') : a));
  assert.ok(serverArgs.includes(join(dir, 'disk.img')), 'README: the backing file is disk.img');
  const json = (s: string): string => JSON.stringify(s).slice(1, -1);
  const qemuArgs = readme.qemuArgs.map((a) => a.split(json(readme.socket)).join(json(sock)));
  const { child, stderr } = startCli(serverArgs);
  try {
    await waitForSocket(sock, child, stderr);
    const script = [
      'loadmod nvme',
      'i=0; while [ ! -e /sys/block/nvme0n1/size ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done',
      ...readme.transcript.map((t, i) => `section readme-${i} sh -c '${t.command.replace(/'/g, `'\\''`)}'`),
    ].join('\n');
    const res = await bootGuest({ socket: null, guestScript: script, qemuArgs, timeoutMs: 170_000 });
    const why = `\n--- console ---\n${res.console.slice(-6000)}\n--- qemu stderr ---\n${res.qemuStderr}\n--- device ---\n${stderr()}`;
    assert.equal(res.exitCode, 0, `QEMU exit ${res.exitCode}${why}`);
    const report = parseGuestReport(res.console);
    assert.ok(report.done, `guest did not finish${why}`);
    assert.deepEqual(qemuProblems(res.qemuStderr, HARMLESS_QEMU_LINES), [], why);
    assert.ok(report.pci.some((d) => d.vendor === 0x4e56), `the NVMe sample is not on the guest's bus${why}`);
    readme.transcript.forEach((t, i) => {
      const s = findSection(report, `readme-${i}`);
      assert.ok(s, `guest section for "${t.command}" missing${why}`);
      assert.equal(s.rc, 0, `"${t.command}" failed in the guest: ${s.output}`);
      const got = s.lines.map((l) => stripTime(l).trimEnd());
      for (const want of t.expected) assert.ok(got.includes(want), `"${t.command}" in the guest printed\n${got.join('\n')}\nnot the README's line "${want}"`);
    });
    console.log(`# README QEMU: boot ${res.wallMs} ms; ${readme.transcript.map((t, i) => `${t.command} -> ${findSection(report, `readme-${i}`)?.lines.map(stripTime).join(' | ')}`).join('; ')}`);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    rmSync(dir, { recursive: true, force: true });
  }
});
