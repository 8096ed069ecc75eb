// One root logger for the process (pino, JSON lines). Everything else logs through a
// child of it that carries its context as structured fields — component, node, vip —
// never interpolated into the message, so that logs can be filtered by field.
//
// The level comes from FULCRUM_LOG_LEVEL (default info); the CLI's --log-level
// overrides it through setLogLevel(). Writes are synchronous: the agent logs little,
// and the last line before an exit (the reason it exits) must never be lost.
import { pino, type Logger, type LevelWithSilent } from 'pino';
import { FulcrumError } from './errors.ts';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Context fields every child may carry; more structured fields are welcome. */
export type LogContext = {
  readonly component?: string;
  readonly node?: string;
  readonly vip?: string;
  readonly [field: string]: unknown;
};

export function isLogLevel(text: string): text is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(text);
}

/** A level name from user input (flag or environment), or a FulcrumError naming the choices. */
export function parseLogLevel(text: string, where: string): LogLevel {
  const level = text.trim().toLowerCase();
  if (!isLogLevel(level)) {
    throw new FulcrumError('ERR_CONFIG', `${where}: unknown log level "${text}" (one of ${LOG_LEVELS.join(', ')})`);
  }
  return level;
}

function initialLevel(): LevelWithSilent {
  const fromEnv = process.env.FULCRUM_LOG_LEVEL;
  if (fromEnv === undefined || fromEnv === '') return 'info';
  // A typo in the environment must not stop the process before it can say why: fall
  // back to info and say so once the logger exists.
  return isLogLevel(fromEnv.trim().toLowerCase()) ? (fromEnv.trim().toLowerCase() as LevelWithSilent) : 'info';
}

export const rootLogger: Logger = pino(
  {
    level: initialLevel(),
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  },
  pino.destination({ dest: 1, sync: true }),
);

{
  const fromEnv = process.env.FULCRUM_LOG_LEVEL;
  if (fromEnv !== undefined && fromEnv !== '' && !isLogLevel(fromEnv.trim().toLowerCase())) {
    rootLogger.warn({ FULCRUM_LOG_LEVEL: fromEnv, choices: LOG_LEVELS }, 'unknown log level in FULCRUM_LOG_LEVEL; using info');
  }
}

/** Change the level of the root logger and every child made from it. */
export function setLogLevel(level: LogLevel): void {
  rootLogger.level = level;
}

/** A child of `parent` (default: the root) with context fields: child({ component: 'agent', node }). */
export function child(context: LogContext, parent: Logger = rootLogger): Logger {
  return parent.child(context);
}

/** The fields to log for an error: code, message, details and cause, without a stack unless asked. */
export function errorFields(err: unknown, withStack = false): Record<string, unknown> {
  if (err instanceof FulcrumError) {
    return {
      code: err.code,
      error: err.message,
      ...(Object.keys(err.details).length > 0 ? { details: err.details } : {}),
      ...(err.cause !== undefined ? { cause: err.cause instanceof Error ? err.cause.message : String(err.cause) } : {}),
      ...(withStack ? { stack: err.stack } : {}),
    };
  }
  if (err instanceof Error) return { code: 'ERR_INTERNAL', error: err.message, ...(withStack ? { stack: err.stack } : {}) };
  return { code: 'ERR_INTERNAL', error: String(err) };
}
