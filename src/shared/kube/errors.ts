// A failed Kubernetes API call, in the error catalog: code ERR_KUBE_API, with the HTTP
// code and the API's reason (metav1.Status) so callers can branch on 404 / 409 / 410.
import { FulcrumError } from '../errors.ts';

/** The metav1.Status the API server answers a failed request with. */
export interface ApiStatus {
  kind?: 'Status';
  code?: number;
  reason?: string;
  message?: string;
  details?: unknown;
}

/** `httpCode` is the HTTP status, 0 when the request never got an answer (reason says why). */
export class KubeApiError extends FulcrumError {
  readonly httpCode: number;
  readonly reason: string;
  readonly apiStatus: ApiStatus | undefined;

  constructor(httpCode: number, reason: string, message: string, apiStatus?: ApiStatus, options: { cause?: unknown } = {}) {
    super('ERR_KUBE_API', message, { ...options, details: { httpCode, reason } });
    this.name = 'KubeApiError';
    this.httpCode = httpCode;
    this.reason = reason;
    this.apiStatus = apiStatus;
  }
}

export function isApiError(err: unknown, httpCode?: number): err is KubeApiError {
  return err instanceof KubeApiError && (httpCode === undefined || err.httpCode === httpCode);
}
