// The running build's version: package.json's, read once. Reported by the CLI
// (--version), in build_info metrics and in status.
import { readFileSync } from 'node:fs';

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

export const FULCRUM_VERSION: string = readVersion();
