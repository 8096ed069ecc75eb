// Running binding calls inside another network namespace (a pod's), from a worker
// thread that setns()es itself there.
//
// Why a worker: setns(CLONE_NEWNET) switches the namespace of the calling thread only,
// and everything that thread does afterwards (sockets, netlink, interface names)
// happens in the new namespace. The main thread runs the agent's event loop: its
// Kubernetes watches, metrics server and health sockets must never end up in a pod's
// namespace, not even briefly, and a failed switch back would strand them there. A
// short-lived worker thread enters the namespace, makes the libbpf calls, and exits;
// its OS thread, and with it the namespace reference, goes away (a long-lived worker
// would keep a deleted pod's namespace alive).
//
// What crosses the thread boundary: the name of an exported function of a module and
// its arguments (structured-clone values: numbers, strings, plain objects). File
// descriptors are per process, not per thread, so a program fd opened on the main
// thread can be passed in as a number, and fds the worker creates stay valid after it
// exits. Pins live in the mount namespace, which setns(CLONE_NEWNET) does not change.

import { Worker } from 'node:worker_threads';
import { libbpfLogMark, libbpfWarningsSince } from './libbpf.ts';
import { FulcrumError, type ErrorCode } from '../../shared/errors.ts';

export interface NetnsRequest {
  nsPath: string;
  /** URL (file:) of the module whose export runs inside the namespace. */
  module: string;
  /** Name of the exported function. */
  fn: string;
  args: readonly unknown[];
}

/** What the worker posts back. */
export type NetnsReply =
  | { ok: true; value: unknown }
  | { ok: false; error: { code?: ErrorCode; name: string; message: string; details?: Record<string, unknown>; stack?: string } };

export interface InNetnsOptions {
  /** Give up (and terminate the worker) after this long. Default 30 s. */
  timeoutMs?: number;
}

const WORKER_URL = new URL('./netns-worker.ts', import.meta.url);
const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * Call `module`'s export `fn(...args)` on a worker thread that has entered the network
 * namespace at `nsPath` (/run/netns/<name>, /proc/<pid>/ns/net, or a CRI-given path).
 * Errors thrown there come back as FulcrumErrors with the same code.
 */
export function runInNetns<T>(nsPath: string, module: string | URL, fn: string, args: readonly unknown[],
  options: InNetnsOptions = {}): Promise<T> {
  const request: NetnsRequest = { nsPath, module: String(module), fn, args };
  // libbpf's print callback lives on this thread (see libbpf.ts): what libbpf logs
  // during the worker's calls lands in this thread's ring, not the worker's.
  const mark = libbpfLogMark();
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const worker = new Worker(WORKER_URL, { workerData: request, stdout: false, stderr: false });
    const timer = setTimeout(() => {
      finish(() => reject(new FulcrumError('ERR_NETNS',
        `${fn} in network namespace ${nsPath} did not finish within ${options.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`,
        { details: { nsPath, fn } })));
      void worker.terminate();
    }, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);

    function finish(settle: () => void): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      settle();
    }

    worker.once('message', (reply: NetnsReply) => {
      if (reply.ok) {
        finish(() => resolve(reply.value as T));
        return;
      }
      const { code, message, details, stack } = reply.error;
      const warnings = message.includes('\nlibbpf said:') ? [] : libbpfWarningsSince(mark);
      const error = new FulcrumError(code ?? 'ERR_NETNS',
        `in network namespace ${nsPath}: ${message}${warnings.length > 0 ? `\nlibbpf said:\n  ${warnings.join('\n  ')}` : ''}`,
        { details: { ...details, nsPath, ...(warnings.length > 0 ? { libbpfLog: warnings } : {}) } });
      if (stack) error.stack = `${error.name}: ${error.message}\n--- in the netns worker ---\n${stack}`;
      finish(() => reject(error));
    });
    worker.once('error', (cause) => {
      finish(() => reject(new FulcrumError('ERR_NETNS', `the netns worker for ${nsPath} crashed running ${fn}: ${String(cause)}`,
        { cause, details: { nsPath, fn } })));
    });
    worker.once('exit', (code) => {
      finish(() => reject(new FulcrumError('ERR_NETNS',
        `the netns worker for ${nsPath} exited (code ${code}) without an answer to ${fn}`, { details: { nsPath, fn } })));
    });
  });
}
