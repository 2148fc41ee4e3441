// --socket-mode and --socket-owner of the serving commands: QEMU under
// libvirt runs as another user (libvirt-qemu, qemu), which the default mode
// 0600 shuts out; `--socket-mode 0660 --socket-owner root:libvirt-qemu`
// lets it in and nobody else.
import { execFileSync } from 'node:child_process';
import { chownSync, readFileSync } from 'node:fs';
import { UsageError, type CliArgs, type CliOptions } from './types.js';
import { stringOption } from './args.js';

/** The options, for a command's declaration. */
export const SOCKET_OPTIONS = {
  'socket-mode': { type: 'string' },
  'socket-owner': { type: 'string' },
} as const satisfies CliOptions;

/** The usage lines describing them. */
export const SOCKET_USAGE = [
  '  --socket-mode MODE         permissions of the socket file, octal (default 0600)',
  '  --socket-owner USER[:GROUP]',
  '                             owner and group of the socket file, as chown takes',
  '                             them (names or numbers; USER: is the login group,',
  '                             :GROUP the group alone); changing the owner needs root',
].join('\n');

/** Who the socket file is handed to; -1 leaves that id as it is. */
export interface SocketOwner {
  uid: number;
  gid: number;
}

/** What the options asked for. */
export interface SocketSettings {
  socketMode: number;
  owner: SocketOwner | undefined;
}

/** Parses an octal permission mode ("0660", "660", "0o660"); no setuid/setgid/sticky bits. */
export function parseSocketMode(s: string): number {
  const m = /^(?:0o?)?([0-7]{1,3})$/.exec(s);
  if (!m) throw new UsageError(`--socket-mode ${s}: expected an octal mode such as 0660`);
  return parseInt(m[1]!, 8);
}

/** The entry for `key` in a getent database (passwd, group), falling back to the /etc file. */
function lookup(db: 'passwd' | 'group', key: string): string[] | undefined {
  try {
    const line = execFileSync('getent', [db, key], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0];
    if (line) return line.split(':');
  } catch {
    // not found (exit 2) or no getent: try the file
  }
  try {
    for (const line of readFileSync(`/etc/${db}`, 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === key || (/^\d+$/.test(key) && f[2] === key)) return f;
    }
  } catch {
    // no such file
  }
  return undefined;
}

function userId(name: string): { uid: number; gid: number } {
  const f = lookup('passwd', name);
  if (f) return { uid: Number(f[2]), gid: Number(f[3]) };
  if (/^\d+$/.test(name)) return { uid: Number(name), gid: -1 };
  throw new UsageError(`--socket-owner: no user ${name}`);
}

function groupId(name: string): number {
  if (/^\d+$/.test(name)) return Number(name);
  const f = lookup('group', name);
  if (f) return Number(f[2]);
  throw new UsageError(`--socket-owner: no group ${name}`);
}

/** Parses USER, USER:GROUP, USER: (the user's login group) or :GROUP, as chown(1) does. */
export function parseSocketOwner(spec: string): SocketOwner {
  const i = spec.indexOf(':');
  const user = i < 0 ? spec : spec.slice(0, i);
  const group = i < 0 ? undefined : spec.slice(i + 1);
  if (user === '' && (group === undefined || group === '')) throw new UsageError(`--socket-owner ${spec}: expected USER[:GROUP]`);
  const u = user === '' ? { uid: -1, gid: -1 } : userId(user);
  const gid = group === undefined ? -1 : group === '' ? u.gid : groupId(group);
  if (group === '' && gid < 0) throw new UsageError(`--socket-owner ${spec}: ${user} has no login group`);
  return { uid: u.uid, gid };
}

/** The socket settings a serving command was given. */
export function socketSettings(args: CliArgs): SocketSettings {
  const mode = stringOption(args, 'socket-mode');
  const owner = stringOption(args, 'socket-owner');
  return { socketMode: mode === undefined ? 0o600 : parseSocketMode(mode), owner: owner === undefined ? undefined : parseSocketOwner(owner) };
}

/** Hands the socket file to its owner (after listen created it). */
export function applySocketOwner(path: string, owner: SocketOwner | undefined): void {
  if (!owner) return;
  try {
    chownSync(path, owner.uid, owner.gid);
  } catch (e) {
    throw new Error(`cannot give ${path} to ${owner.uid}:${owner.gid}: ${(e as Error).message}`, { cause: e });
  }
}
