// Validation at the agent's boundaries (configuration, desired state): zod decides,
// this module turns its issues into words a person can act on — one line per
// problem, each with the path of the field ("state.vips[0].backends[1].address").
import type { z } from 'zod';
import { FulcrumError, type ErrorCode } from '../shared/errors.ts';

export type PathSegment = PropertyKey;

/** `agent.balancer.interfaces[0].name` from ['agent', 'balancer', 'interfaces', 0, 'name']. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out === '' ? String(segment) : `.${String(segment)}`;
  }
  return out === '' ? '(top level)' : out;
}

/** One problem, in words. */
export type ValidationProblem = { readonly path: readonly PathSegment[]; readonly message: string };

export function problemsOf(error: z.ZodError, prefix: readonly PathSegment[] = []): ValidationProblem[] {
  return error.issues.map((issue) => {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      return { path, message: `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}` };
    }
    if (issue.code === 'invalid_type' && issue.message.endsWith('received undefined')) {
      return { path, message: `required (${issue.expected})` };
    }
    return { path, message: issue.message };
  });
}

/**
 * Parses `input` with `schema`, or throws a FulcrumError (ERR_CONFIG by default) whose
 * message lists every problem on its own line, and whose details carry them too.
 */
export function parseOrThrow<S extends z.ZodType>(schema: S, input: unknown, what: string,
  options: { code?: ErrorCode; prefix?: readonly PathSegment[]; locate?: (path: readonly PathSegment[]) => string | undefined } = {}): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const problems = problemsOf(result.error, options.prefix);
  const lines = problems.map((p) => {
    const where = options.locate?.(p.path);
    return `  ${where !== undefined ? `${where} ` : ''}${formatPath(p.path)}: ${p.message}`;
  });
  throw new FulcrumError(options.code ?? 'ERR_CONFIG', `${what} is invalid:\n${lines.join('\n')}`,
    { details: { problems: problems.map((p) => ({ path: formatPath(p.path), message: p.message })) } });
}
