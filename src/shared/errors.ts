// The error catalog: every error Fulcrum raises on purpose is a FulcrumError with a
// stable `code` (for logs, metrics, Events and exit codes) and the underlying `cause`.

export type ErrorCode =
  | 'ERR_LIBBPF'          // a libbpf call failed (open, load, map op, attach)
  | 'ERR_BPF_VERIFIER'    // the kernel verifier rejected a program
  | 'ERR_BPF_MAP'         // a map operation failed
  | 'ERR_BPF_ATTACH'      // attaching or detaching a program failed
  | 'ERR_CONFIG'          // configuration is invalid
  | 'ERR_DESIRED_STATE'   // desired state is invalid or cannot be programmed
  | 'ERR_NETNS'           // entering or changing a network namespace failed
  | 'ERR_BPFFS'           // the pin root is not on a BPF filesystem (and it could not be mounted)
  | 'ERR_KUBE_API'        // a Kubernetes API call failed (KubeApiError: HTTP code and reason)
  | 'ERR_INTERNAL';

export class FulcrumError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FulcrumError';
    this.code = code;
    this.details = options.details ?? {};
  }
}

export function isFulcrumError(err: unknown, code?: ErrorCode): err is FulcrumError {
  return err instanceof FulcrumError && (code === undefined || err.code === code);
}
