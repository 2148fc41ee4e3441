// CLI of the socket fuzzer (scripts/fuzz.mjs runs it under tsx):
//   --messages N   messages to send (default 20000)
//   --seed S       PRNG seed (default: time-based, printed)
//   --time S       time limit in seconds (default 600); the run stops early and says so
//   --progress N   progress line every N messages (default 100000)
//   --json FILE    write the result as JSON there too
// Exit status 0 when the server survived with fds back to baseline and RSS
// bounded, 1 otherwise. The result goes to stdout as JSON.
import { writeFileSync } from 'node:fs';
import { runCampaign } from './campaign.js';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const seed = Number(opt('seed') ?? Date.now() % 0x7fffffff);
const messages = Number(opt('messages') ?? 20000);
const timeLimitMs = Number(opt('time') ?? 600) * 1000;
const progressEvery = Number(opt('progress') ?? 100000);
if (!Number.isInteger(seed) || !Number.isInteger(messages) || messages < 1 || !(timeLimitMs > 0)) {
  process.stderr.write('usage: fuzz [--messages N] [--seed S] [--time SECONDS] [--progress N] [--json FILE]\n');
  process.exit(2);
}
const res = await runCampaign({ seed, messages, timeLimitMs, progressEvery });
const out = JSON.stringify(res, null, 2);
process.stdout.write(out + '\n');
const file = opt('json');
if (file) writeFileSync(file, out + '\n');
const ok = res.failures.length === 0 && !res.crashed;
process.stderr.write(
  `fuzz: ${ok ? 'OK' : 'FAILED'} seed ${res.seed}: ${res.messages} messages in ${res.sessions} sessions, ${(res.elapsedMs / 1000).toFixed(1)} s${res.timedOut ? ' (time limit)' : ''}; ` +
    `server fds ${res.server.fdBaseline} -> ${res.server.fdEnd}, RSS ${res.server.rssBaselineKiB} -> ${res.server.rssEndKiB} KiB (peak ${res.server.rssPeakKiB}), ` +
    `live heap+external after GC ${(res.server.liveBaseline / 1048576).toFixed(1)} -> ${(res.server.liveEnd / 1048576).toFixed(1)} MiB\n`,
);
for (const f of res.failures) process.stderr.write(`fuzz: ${f}\n`);
process.exit(ok ? 0 : 1);
