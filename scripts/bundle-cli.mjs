// Bundles the compiled `vfio-user server` command (dist/cli/server.js and the
// library modules it imports) into one file, dist/cli/server.bundle.js, after
// tsc. Node 20 loads one 230 KB module in about a third of the time it takes
// for the 61-module graph (ESM resolution, file reads and compiles per
// module), and start-up to listening is a figure users of the sample server
// feel. cli/main.ts loads the bundle unless it is older than server.js by
// more than a second (a plain `tsc` afterwards makes it stale, and then it is
// ignored; see importBundled).
//
// The modules cli/main.js itself loads stay outside, shared, so the classes
// both sides test with instanceof (UsageError) are one class.
//
//   node scripts/bundle-cli.mjs
import { existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const DIST = join(ROOT, 'dist');
/** Subcommands bundled: those whose modules find no file relative to their own URL but the addon (which looks upwards for the package root). */
const COMMANDS = ['server'];
/** Compiled modules main.js loads before the command: kept as imports of the shared files. */
const SHARED = ['cli/types.js', 'cli/args.js', 'src/util/logger.js'].map((f) => join(DIST, f));

let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  // A build without devDependencies: the CLI loads the unbundled modules.
  console.error('bundle-cli: esbuild is not installed; the CLI will load dist/cli/*.js module by module');
  process.exit(0);
}

for (const name of COMMANDS) {
  const entry = join(DIST, 'cli', `${name}.js`);
  if (!existsSync(entry)) throw new Error(`bundle-cli: ${entry} is missing (run tsc first)`);
  const outdir = join(DIST, 'cli');
  await esbuild.build({
    entryPoints: [entry],
    outfile: join(outdir, `${name}.bundle.js`),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: true,
    logLevel: 'warning',
    plugins: [
      {
        name: 'shared-with-main',
        setup(build) {
          build.onResolve({ filter: /^\./ }, (args) => {
            const abs = join(args.resolveDir, args.path);
            if (!SHARED.includes(abs)) return undefined;
            return { path: `./${relative(outdir, abs)}`, external: true };
          });
        },
      },
    ],
  });
}
