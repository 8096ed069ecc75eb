#!/usr/bin/env node
// The `fulcrum` executable. Node 24 runs this TypeScript directly (type stripping);
// src/cli/main.ts holds the program.
import { main } from './cli/main.ts';

process.exit(await main(process.argv));
