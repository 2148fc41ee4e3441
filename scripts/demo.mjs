#!/usr/bin/env node
// The demo: starts the timer sample server, then the sample client, which
// exercises every command and live-migrates the device to a second server.
//   npm run demo            (after npm ci)
//   npm run demo -- -v      (with both sides' protocol logs on stderr)
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../bin/vfio-user.js', import.meta.url));
const verbose = process.argv.includes('-v') ? ['-v'] : [];
const dir = mkdtempSync(join(tmpdir(), 'vfio-user-demo-'));
const sock = join(dir, 'vfio-user.sock');

const run = (args) => spawn(process.execPath, [bin, ...verbose, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
const exited = (p) => new Promise((resolve) => p.on('exit', (code) => resolve(code ?? 1)));

console.log(`$ vfio-user server ${sock} &`);
const server = run(['server', sock]);
const serverDone = exited(server);
for (let i = 0; i < 500 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 20));
console.log(`$ vfio-user client ${sock}`);
const clientCode = await exited(run(['client', sock]));
const serverCode = await Promise.race([serverDone, new Promise((r) => setTimeout(() => r('still running'), 5000))]);
if (serverCode === 'still running') server.kill('SIGTERM');
console.log(`client exited ${clientCode}, source server exited ${serverCode}`);
rmSync(dir, { recursive: true, force: true });
process.exitCode = clientCode === 0 && serverCode === 0 ? 0 : 1;
