#!/usr/bin/env node
// The packages run from TypeScript source through tsx (no build step); register it, then run the CLI.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
