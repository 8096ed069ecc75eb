// The worker-thread side of netns.ts: enter the requested network namespace with
// setns() (this thread only), run one exported function there, switch back, and post
// the result. See netns.ts for why this runs on its own thread.

import { closeSync, openSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import koffi from 'koffi';
import { CLONE_NEWNET, setns } from './libc.ts';
import type { NetnsReply, NetnsRequest } from './netns.ts';
import { FulcrumError, isFulcrumError } from '../../shared/errors.ts';

function enter(nsFd: number, what: string): void {
  if (setns(nsFd, CLONE_NEWNET) !== 0) {
    const err = koffi.errno();
    const name = Object.entries(koffi.os.errno).find(([, v]) => v === err)?.[0] ?? `errno ${err}`;
    const hint = name === 'EINVAL' ? ': the path is not a network namespace'
      : name === 'EPERM' ? ': entering a network namespace needs CAP_SYS_ADMIN' : '';
    throw new FulcrumError('ERR_NETNS', `cannot enter ${what}: setns failed with ${name}${hint}`, { details: { errno: err } });
  }
}

function openNamespace(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (cause) {
    throw new FulcrumError('ERR_NETNS', `cannot open network namespace ${path}: ${(cause as Error).message}`,
      { cause, details: { nsPath: path } });
  }
}

async function main(request: NetnsRequest): Promise<unknown> {
  const home = openNamespace('/proc/thread-self/ns/net');
  const target = openNamespace(request.nsPath);
  try {
    enter(target, `network namespace ${request.nsPath}`);
    try {
      const module = (await import(request.module)) as Record<string, unknown>;
      const fn = module[request.fn];
      if (typeof fn !== 'function') {
        throw new FulcrumError('ERR_INTERNAL', `${request.module} has no exported function ${request.fn}`);
      }
      return await (fn as (...args: unknown[]) => unknown)(...request.args);
    } finally {
      // The thread is about to end, but leave it where it started anyway, so nothing
      // that runs after (exit handlers) acts inside the pod's namespace.
      enter(home, 'the original network namespace');
    }
  } finally {
    closeSync(target);
    closeSync(home);
  }
}

function toReply(err: unknown): NetnsReply {
  const error = err instanceof Error ? err : new Error(String(err));
  return {
    ok: false,
    error: {
      ...(isFulcrumError(error) ? { code: error.code, details: { ...error.details } } : {}),
      name: error.name,
      message: error.message,
      ...(error.stack ? { stack: error.stack } : {}),
    },
  };
}

const port = parentPort;
if (port) {
  main(workerData as NetnsRequest).then(
    (value) => {
      try {
        port.postMessage({ ok: true, value } satisfies NetnsReply);
      } catch (err) {
        port.postMessage(toReply(new FulcrumError('ERR_INTERNAL', `the result of the netns call cannot be sent back: ${String(err)}`)));
      }
    },
    (err: unknown) => {
      try {
        port.postMessage(toReply(err));
      } catch {
        // Details that cannot be cloned: send the words only.
        const error = err instanceof Error ? err : new Error(String(err));
        port.postMessage({ ok: false, error: { name: error.name, message: error.message } } satisfies NetnsReply);
      }
    },
  );
}
