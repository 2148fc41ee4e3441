// `vfio-user check SOCKET`: the thin command over tools/check.
import { parseArgs } from 'node:util';
import { ALL_CASES, GROUPS, formatResult, formatTotals, runCheck, selectCases, type GroupName } from '../tools/check/index.js';
import { UsageError, type CliCommand } from './types.js';

export const CHECK_USAGE = [
  'usage: vfio-user check SOCKET [--pid PID] [--restart CMD] [--only GROUP[,GROUP]] [--list] [--json] [--timeout MS]',
  '',
  'Runs a QEMU-free conformance suite against the vfio-user server listening',
  'on SOCKET: each case opens its own connection, sends raw messages and',
  'judges the answers against the spec (docs/interop/vfio-user.rst). Where the',
  'spec is silent, or QEMU and libvfio-user rely on other behaviour, every',
  'accepted answer passes and the line says which one the server gave.',
  '',
  `groups: ${GROUPS.join(', ')}`,
  '',
  'options:',
  '  --pid PID       count /proc/PID/fd around every case: a case that leaves the',
  '                  server with more fds fails (the fds group needs it)',
  '  --restart CMD   for servers that exit after a client: CMD is run through',
  '                  sh whenever nobody listens, {sock} replaced by SOCKET',
  '                  (fd counting is then off: the pid changes)',
  '  --only GROUPS   run only these groups (comma separated)',
  '  --list          list the cases and exit',
  '  --json          one JSON object per case, then the totals as one object',
  '  --timeout MS    how long a reply may take (default 2000)',
  '',
  'Output: one line per case, then "N passed, N failed, N skipped".',
  'Exit status: 0 when nothing failed, 1 otherwise, 2 on bad usage.',
  '',
].join('\n');

export const checkCommand: CliCommand = {
  name: 'check',
  summary: 'run the conformance suite against any vfio-user server',
  usage: CHECK_USAGE,
  positionals: [],
  // Parsed here: SOCKET is optional with --list, and --only may repeat.
  rawArguments: true,
  async run(cliArgs, io) {
    const args = cliArgs.positionals;
    let parsed;
    try {
      parsed = parseArgs({
        args,
        allowPositionals: true,
        options: {
          pid: { type: 'string' },
          restart: { type: 'string' },
          only: { type: 'string', multiple: true },
          list: { type: 'boolean' },
          json: { type: 'boolean' },
          timeout: { type: 'string' },
        },
      });
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const v = parsed.values;
    const only = (v.only ?? []).flatMap((s) => s.split(',')).filter((s) => s !== '');
    for (const g of only) if (!(GROUPS as readonly string[]).includes(g)) throw new UsageError(`unknown group '${g}' (groups: ${GROUPS.join(', ')})`);
    const cases = selectCases(only as GroupName[]);
    if (v.list) {
      for (const k of cases) io.out(v.json ? `${JSON.stringify({ id: k.id, group: k.group, spec: k.spec, title: k.title })}\n` : `${k.id}  ${k.title}  [${k.spec}]\n`);
      if (!v.json) io.out(`${cases.length} of ${ALL_CASES.length} cases\n`);
      return 0;
    }
    if (parsed.positionals.length !== 1) throw new UsageError('expected one SOCKET path');
    let pid: number | undefined;
    if (v.pid !== undefined) {
      pid = Number(v.pid);
      if (!Number.isInteger(pid) || pid <= 0) throw new UsageError(`--pid ${v.pid} is not a process id`);
    }
    let timeoutMs: number | undefined;
    if (v.timeout !== undefined) {
      timeoutMs = Number(v.timeout);
      if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new UsageError(`--timeout ${v.timeout} is not a positive number of ms`);
    }
    const summary = await runCheck(cases, {
      socket: parsed.positionals[0]!,
      ...(pid !== undefined ? { pid } : {}),
      ...(v.restart !== undefined ? { restart: v.restart } : {}),
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      onResult: (r) => io.out(v.json ? `${JSON.stringify(r)}\n` : `${formatResult(r)}\n`),
      onNote: (t) => io.logger.info(t),
    });
    if (summary.fatal) {
      io.err(`vfio-user check: ${summary.fatal}\n`);
      return 1;
    }
    const totals = { passed: summary.passed, failed: summary.failed, skipped: summary.skipped };
    io.out(v.json ? `${JSON.stringify(totals)}\n` : `${formatTotals(totals)}\n`);
    return summary.failed > 0 ? 1 : 0;
  },
};
