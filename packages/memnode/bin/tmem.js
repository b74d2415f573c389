#!/usr/bin/env node
// The `tmem` command. An installed package (from `npm pack`) holds the JavaScript `tsc -b` built into dist/ and
// runs it. A checkout of the repository has src/ and runs the TypeScript source through ./tmem-source.js, so an
// edit needs no build and a dist/ left from an earlier build is never run stale.
import { existsSync } from 'node:fs';
import { URL } from 'node:url';

if (existsSync(new URL('../src/cli.ts', import.meta.url))) {
  await import('./tmem-source.js');
} else {
  await import('../dist/cli.js');
}
