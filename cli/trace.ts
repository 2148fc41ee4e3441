// `vfio-user trace`: the thin command over tools/trace.
import { closeSync, openSync, writeSync } from 'node:fs';
import { TraceProxy, formatEvent, formatEventJson, formatSummary, parseFilter } from '../tools/trace/index.js';
import { stringOption } from './args.js';
import { UsageError, type CliCommand } from './types.js';

export const TRACE_USAGE = [
  'usage: vfio-user trace [--json] [--out FILE] [--filter CMDS] [--once] --listen PATH --connect PATH',
  '',
  'A transparent proxy between a vfio-user client and server. Point the client',
  '(QEMU, libvfio-user\'s client, `vfio-user client`) at --listen PATH; for each',
  'client the proxy connects to the server at --connect PATH and forwards every',
  'message in both directions unchanged, fds included, printing one line per',
  'message: time, session, direction (c>s, s>c), msg id, command, size, flags,',
  'the decoded payload (VERSION JSON, region/offset/count, DMA ranges, IRQ',
  'index/start/count/fds, migration states), errors by errno name, and the',
  'time from a command to its reply. A twin socket the server offers is',
  'replaced by a socketpair of the proxy\'s, so its DMA traffic is traced too.',
  '',
  'Interrupts signalled through eventfds (the fds SET_IRQS hands over, e.g.',
  'QEMU\'s KVM irqfds) go from the server straight to the client: they bypass',
  'any proxy and do not appear here; only the SET_IRQS that assigns them does.',
  '',
  'options:',
  '  --listen PATH    socket to create for clients (mode 0600)',
  '  --connect PATH   the server\'s socket',
  '  --json           JSON lines instead of text (the summary as a last line)',
  '  --out FILE       write the trace to FILE instead of stdout',
  '  --filter CMDS    print only these commands (comma separated names or',
  '                   numbers, e.g. REGION_READ,DMA_MAP); all are forwarded',
  '  --once           exit after the first client has gone',
  '',
  'At exit (SIGINT, SIGTERM, or --once) a summary gives per command the',
  'counts, errors, bytes and reply latency percentiles.',
  '',
].join('\n');

export const traceCommand: CliCommand = {
  name: 'trace',
  summary: 'proxy a vfio-user connection and decode every message',
  usage: TRACE_USAGE,
  options: {
    listen: { type: 'string' },
    connect: { type: 'string' },
    json: { type: 'boolean' },
    out: { type: 'string' },
    filter: { type: 'string' },
    once: { type: 'boolean' },
  },
  positionals: [],
  async run(args, io) {
    const v = {
      listen: stringOption(args, 'listen'),
      connect: stringOption(args, 'connect'),
      json: args.values.json === true,
      out: stringOption(args, 'out'),
      filter: stringOption(args, 'filter'),
      once: args.values.once === true,
    };
    if (!v.listen || !v.connect) throw new UsageError('--listen PATH and --connect PATH are required');
    let filter: Set<number> | null = null;
    try {
      if (v.filter !== undefined) filter = parseFilter(v.filter);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const fd = v.out ? openSync(v.out, 'w', 0o600) : -1;
    const write = (s: string): void => {
      if (fd >= 0) writeSync(fd, s);
      else io.out(s);
    };
    const json = v.json;
    let finish: (code: number) => void = () => undefined;
    const done = new Promise<number>((r) => (finish = r));
    const proxy = new TraceProxy({
      listen: v.listen,
      connect: v.connect,
      logger: io.logger,
      onEvent: (e) => {
        if (filter && !filter.has(e.cmd)) return;
        write(`${json ? formatEventJson(e) : formatEvent(e)}\n`);
      },
      onSessionEnd: () => {
        if (v.once) finish(0);
      },
    });
    proxy.listen();
    io.logger.info(`tracing ${v.listen} -> ${v.connect}`);
    const onSignal = (): void => finish(0);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      const code = await done;
      await proxy.close();
      const s = proxy.summary.build();
      write(json ? `${JSON.stringify({ summary: s })}\n` : formatSummary(s));
      return code;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (fd >= 0) closeSync(fd);
    }
  },
};
