// Shared by the install tests: a copy of the checkout as a fresh clone would
// have it, a PATH holding only node and npm, and child processes with a
// liveness watchdog.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('../..', import.meta.url));

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; a run that hangs past `watchdogMs` is killed and fails the test. */
export function run(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; watchdogMs?: number }): Promise<Run> {
  const watchdogMs = opts.watchdogMs ?? 600_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} hung (watchdog ${watchdogMs} ms); stderr: ${stderr}`));
    }, watchdogMs);
    child.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    child.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Like run(), but a non-zero exit throws with the output. */
export async function mustRun(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; watchdogMs?: number }): Promise<Run> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** A temporary directory, removed by the returned cleanup. */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * The checkout's files as a fresh clone has them (tracked and new files, no
 * build/, dist/ or node_modules/), copied to `dest`.
 */
export function copyCheckout(dest: string): void {
  const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: root, encoding: 'utf8' })
    .split('\0')
    .filter((f) => f !== '' && existsSync(join(root, f)));
  for (const f of files) {
    mkdirSync(dirname(join(dest, f)), { recursive: true });
    cpSync(join(root, f), join(dest, f), { preserveTimestamps: true });
  }
}

/** The real path of a program found on this process's PATH. */
export function which(name: string): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(dir, name);
    if (dir !== '' && existsSync(p)) return realpathSync(p);
  }
  throw new Error(`${name} is not on PATH`);
}

/**
 * A directory holding only node, npm and npx, and the environment that puts
 * it alone on PATH: no compiler, make or python is reachable. npm runs scripts
 * through `sh`, found by absolute path (script-shell) rather than on PATH.
 */
export function nodeOnlyEnv(dir: string): NodeJS.ProcessEnv {
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync(which('npm'), join(bin, 'npm'));
  symlinkSync(which('npx'), join(bin, 'npx'));
  return {
    HOME: process.env.HOME ?? dir,
    PATH: bin,
    npm_config_script_shell: '/bin/sh',
    npm_config_prefer_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
  };
}

/** Starts a long-running child and resolves once a stdout line matches `ready`. */
export function startUntil(cmd: string, args: string[], ready: RegExp, opts: { cwd: string; env: NodeJS.ProcessEnv; watchdogMs?: number }): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${args.join(' ')} never printed ${ready} (stdout: ${out}, stderr: ${err})`));
    }, opts.watchdogMs ?? 60_000);
    child.stderr!.on('data', (d) => (err += d));
    child.stdout!.on('data', (d) => {
      out += d;
      if (ready.test(out)) {
        clearTimeout(t);
        resolve(child);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${args.join(' ')} exited ${code} before it was ready (stdout: ${out}, stderr: ${err})`));
    });
  });
}

/**
 * `cmd ...pre server SOCK` (the timer sample, which exits 0 once its one
 * client leaves) probed with `cmd ...pre probe SOCK`: the probe's stdout, once
 * the server has exited 0.
 */
export async function probeTimerServer(cmd: string, pre: string[], sock: string, opts: { cwd: string; env: NodeJS.ProcessEnv }): Promise<string> {
  const served = run(cmd, [...pre, 'server', sock], { ...opts, watchdogMs: 60_000 });
  for (let i = 0; i < 600 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
  const probe = await mustRun(cmd, [...pre, 'probe', sock], opts);
  const exit = await served;
  if (exit.code !== 0) throw new Error(`${cmd} ${pre.join(' ')} server exited ${exit.code}: ${exit.stderr}`);
  return probe.stdout;
}
