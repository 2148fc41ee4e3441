// The `vfio-user` command line: --version, help, parseArgs-based errors, and
// the serving commands' socket mode and owner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { importBundled, main } from '../../cli/main.js';
import { parseSocketMode, parseSocketOwner } from '../../cli/socket-options.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) });
  return { code, out, err };
}

test('--version prints the package version', async () => {
  const r = await cli(['--version']);
  assert.equal(r.code, 0);
  assert.equal(r.out, `vfio-user-ts ${version}\n`);
});

test('help lists the commands; help COMMAND prints its usage', async () => {
  const all = await cli(['help']);
  assert.equal(all.code, 0);
  for (const c of ['probe', 'server', 'client', 'gpio', 'nvme', 'help']) assert.match(all.out, new RegExp(`^  ${c} `, 'm'));
  assert.match(all.out, /--version/);
  const nvme = await cli(['help', 'nvme']);
  assert.equal(nvme.code, 0);
  assert.match(nvme.out, /^usage: vfio-user nvme .*--backing FILE --size SIZE/);
  assert.match(nvme.out, /--socket-mode MODE/);
  assert.equal((await cli(['gpio', '--help'])).out, (await cli(['help', 'gpio'])).out);
  const unknown = await cli(['help', 'nosuch']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /unknown command 'nosuch'/);
  assert.equal((await cli(['help', 'probe', 'gpio'])).code, 2);
});

test('argument errors are usage errors that name the argument', async () => {
  const cases: [string[], RegExp][] = [
    [['--bogus', 'probe', 's'], /^vfio-user: unknown option --bogus/],
    [['probe', '--bogus', 's'], /^vfio-user probe: unknown option --bogus/],
    [['probe'], /^vfio-user probe: missing SOCKET/],
    [['probe', 'a', 'b'], /^vfio-user probe: unexpected argument b/],
    [['probe', 's', '--json=yes'], /^vfio-user probe: option '--json' does not take an argument/],
    [['server', '--socket-mode', '999', 's'], /--socket-mode 999: expected an octal mode/],
    [['gpio', '--socket-owner', 'no-such-user-here', 's'], /--socket-owner: no user no-such-user-here/],
    [['gpio', '--socket-owner', ':no-such-group-here', 's'], /--socket-owner: no group no-such-group-here/],
  ];
  for (const [argv, why] of cases) {
    const r = await cli(argv);
    assert.equal(r.code, 2, argv.join(' '));
    assert.match(r.err, why, argv.join(' '));
  }
});

test('a command module loads from its bundle unless that is more than a second older, else as it is', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-user-bundled-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Each case its own file names: the ESM cache keeps a URL once imported.
  const write = (name: string, bundleAge: number | null): URL => {
    const mod = join(dir, `${name}.js`);
    writeFileSync(mod, `export const from = 'module';\n`);
    utimesSync(mod, 2_000_000, 2_000_000);
    if (bundleAge !== null) {
      const bundle = join(dir, `${name}.bundle.js`);
      writeFileSync(bundle, `export const from = 'bundle';\n`);
      utimesSync(bundle, 2_000_000 + bundleAge, 2_000_000 + bundleAge);
    }
    return pathToFileURL(mod);
  };
  const from = async (u: URL): Promise<string> => (await importBundled<{ from: string }>(u)).from;
  assert.equal(await from(write('newer', 10)), 'bundle');
  assert.equal(await from(write('same', 0)), 'bundle');
  assert.equal(await from(write('extracted', -0.2)), 'bundle', 'npm writes the bundle a moment before its module');
  assert.equal(await from(write('stale', -10)), 'module', 'a bundle older than its module (tsc ran since) is ignored');
  assert.equal(await from(write('none', null)), 'module');
  // A bundle that fails to load is an error, not a silent fallback.
  const broken = write('broken', 10);
  writeFileSync(join(dir, 'broken.bundle.js'), "throw new Error('broken bundle');\n");
  utimesSync(join(dir, 'broken.bundle.js'), 2_000_010, 2_000_010);
  await assert.rejects(importBundled(broken), /broken bundle/);
});

test('socket mode and owner specs parse as chmod and chown take them', () => {
  assert.equal(parseSocketMode('0660'), 0o660);
  assert.equal(parseSocketMode('660'), 0o660);
  assert.equal(parseSocketMode('0o600'), 0o600);
  assert.throws(() => parseSocketMode('4755'), /octal mode/);
  assert.throws(() => parseSocketMode('rw'), /octal mode/);
  assert.deepEqual(parseSocketOwner('nobody:nogroup'), { uid: 65534, gid: 65534 });
  assert.deepEqual(parseSocketOwner('nobody'), { uid: 65534, gid: -1 });
  assert.deepEqual(parseSocketOwner('root:'), { uid: 0, gid: 0 });
  assert.deepEqual(parseSocketOwner(':nogroup'), { uid: -1, gid: 65534 });
  assert.deepEqual(parseSocketOwner('1234:5678'), { uid: 1234, gid: 5678 });
  assert.throws(() => parseSocketOwner(':'), /expected USER\[:GROUP\]/);
});

/** Starts a serving command from the sources and resolves once its socket exists. */
async function serve(args: string[], sock: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'cli', 'run.ts'), ...args, sock], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<never>((_, reject) => child.on('exit', (c) => reject(new Error(`exited ${c} before listening: ${err}`))));
  const ready = (async () => {
    // Liveness watchdog: a server that never listens fails the test.
    for (let i = 0; i < 1500 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 20));
    if (!existsSync(sock)) throw new Error(`no socket after 30 s: ${err}`);
  })();
  await Promise.race([ready, exited]);
  return child;
}

async function stop(child: ChildProcess): Promise<number | null> {
  const done = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  child.kill('SIGTERM');
  return done;
}

test('serving commands create the socket 0600 by default, or with --socket-mode and --socket-owner', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-user-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const uid = process.getuid!();
  const gid = process.getgid!();

  const plain = join(dir, 'plain.sock');
  const a = await serve(['gpio'], plain);
  const st = statSync(plain);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o7777, 0o600);
  assert.equal(st.uid, uid);
  assert.equal(await stop(a), 0);
  assert.ok(!existsSync(plain), 'the socket file is removed on SIGTERM');

  // As root the socket goes to nobody:nogroup (what libvirt's qemu user would get); otherwise to
  // our own uid and gid, the only owner a non-root user may set.
  const [owner, wantUid, wantGid] = uid === 0 ? ['nobody:nogroup', 65534, 65534] : [`${uid}:${gid}`, uid, gid];
  for (const cmd of [['gpio'], ['server', '--keep'], ['nvme', '--backing', join(dir, 'disk.img'), '--size', '1M']]) {
    const sock = join(dir, `${cmd[0]}.sock`);
    const p = await serve([...cmd, '--socket-mode', '0660', '--socket-owner', owner], sock);
    // listen() creates the file and the owner follows in the same turn; wait for it.
    for (let i = 0; i < 500 && statSync(sock).uid !== wantUid; i++) await new Promise((r) => setTimeout(r, 20));
    const s = statSync(sock);
    assert.equal(s.mode & 0o7777, 0o660, `${cmd[0]} --socket-mode 0660`);
    assert.equal(s.uid, wantUid, `${cmd[0]} --socket-owner uid`);
    assert.equal(s.gid, wantGid, `${cmd[0]} --socket-owner gid`);
    assert.equal(await stop(p), 0);
  }
});
