// What traffic.ts and client-worker.ts say to each other over the worker's stdin and
// stdout (JSON lines). Types only: both ends are in this repository and change together.

/** How a flow failed, in the terms a test asserts on. */
export type FlowError = 'reset' | 'refused' | 'timeout' | 'unreachable' | 'closed' | 'port-in-use' | 'bad-response' | `other: ${string}`;

/** One flow: which pod answered it, or how it failed. */
export type FlowResult = { readonly sourcePort: number; readonly pod?: string; readonly error?: FlowError };

export type HttpParams = {
  readonly target: string;
  readonly port: number;
  readonly sourcePorts: readonly number[];
  readonly concurrency: number;
  readonly timeoutMs: number;
};

export type UdpParams = HttpParams & {
  /** Datagrams sent before the flow counts as failed (one per timeoutMs of silence). */
  readonly attempts: number;
};

export type TransferDirection = 'download' | 'upload';

export type TransferParams = {
  readonly id: string;
  readonly target: string;
  readonly port: number;
  readonly sourcePort: number;
  readonly direction: TransferDirection;
  readonly bytes: number;
  /** Pace the payload over about this long (0: as fast as the path allows). */
  readonly durationMs: number;
  /** Give up when no payload has moved for this long (the path is broken, not slow). */
  readonly stallTimeoutMs: number;
  /** Give up when the whole transfer has taken this long (a path that only trickles). */
  readonly timeoutMs: number;
};

export type TransferResult = {
  readonly id: string;
  readonly sourcePort: number;
  readonly direction: TransferDirection;
  /** The pod that served it (download: from the first line; upload: from the answer). */
  readonly pod: string | undefined;
  /** Payload bytes moved: received (download) or handed to the kernel (upload). */
  readonly bytes: number;
  readonly expected: number;
  /** Every byte moved and the connection closed cleanly. */
  readonly completed: boolean;
  /** short: the connection closed early; stalled: nothing moved for stallTimeoutMs;
   * timeout: not done after timeoutMs. */
  readonly error?: FlowError | 'short' | 'stalled';
  readonly durationMs: number;
  /** The longest time without progress: how long an interruption lasted. */
  readonly maxGapMs: number;
};

export type HoldOpenParams = {
  readonly id: string;
  readonly target: string;
  readonly port: number;
  readonly sourcePorts: readonly number[];
  readonly concurrency: number;
  readonly timeoutMs: number;
};

export type WorkerRequest =
  | { readonly id: number; readonly method: 'http'; readonly params: HttpParams }
  | { readonly id: number; readonly method: 'udp'; readonly params: UdpParams }
  | { readonly id: number; readonly method: 'transferStart'; readonly params: TransferParams }
  | { readonly id: number; readonly method: 'transferResult'; readonly params: { readonly id: string } }
  | { readonly id: number; readonly method: 'holdOpen'; readonly params: HoldOpenParams }
  | { readonly id: number; readonly method: 'holdRequest'; readonly params: { readonly id: string } }
  | { readonly id: number; readonly method: 'holdClose'; readonly params: { readonly id: string } };

export type WorkerMessage =
  | { readonly id: number; readonly result: unknown }
  | { readonly id: number | null; readonly error: string }
  | { readonly event: 'ready'; readonly pid: number }
  | { readonly event: 'progress'; readonly transfer: string; readonly bytes: number; readonly pod: string | undefined };
