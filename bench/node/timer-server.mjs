// Start-up and memory of the timer sample device (samples/timer-device.ts).
// Prints "listening" once the socket accepts. With an IPC channel, answers
// {gc:true} with {rss} after a forced GC (run with --expose-gc).
//
//   node bench/node/timer-server.mjs PATH js       compiled by bench/run.mjs into bench/floor/bin/js
//   node --import tsx bench/node/timer-server.mjs PATH src
const [path, from = 'src'] = process.argv.slice(2);
const mod =
  from === 'js'
    ? await import(new URL('../floor/bin/js/samples/timer-device.js', import.meta.url).href)
    : await import(new URL('../../samples/timer-device.ts', import.meta.url).href);
const { ctx } = mod.createTimerDevice({});
await ctx.listen(path);
process.stdout.write('listening\n');
process.on('message', (m) => {
  if (m && m.gc) {
    for (let i = 0; i < 3; i++) globalThis.gc?.();
    process.send({ rss: process.memoryUsage().rss, usage: process.memoryUsage() });
  }
});
process.on('SIGTERM', () => void ctx.close().then(() => process.exit(0)));
