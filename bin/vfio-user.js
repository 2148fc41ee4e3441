#!/usr/bin/env node
// The `vfio-user` command. Runs the compiled CLI (dist/, built by `npm ci`
// through the prepare script) when present; in a development checkout without
// dist/ it runs the TypeScript sources through tsx.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = new URL('../dist/cli/main.js', import.meta.url);
let mod;
if (existsSync(fileURLToPath(dist))) {
  mod = await import(dist.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  mod = await import(new URL('../cli/main.ts', import.meta.url).href);
}
process.exitCode = await mod.main(process.argv.slice(2));
