/**
 * The demo's flags, parsed strictly with node:util's parseArgs. A bad flag or value is a
 * `UsageError`: the entry point prints its one-line message and exits with code 2.
 */
import { parseArgs } from 'node:util';
import { isProfileName, PROFILE_NAMES, PROFILES, type ProfileName } from './profiles.js';

export interface DemoOptions {
  requests: number;
  concurrency: number;
  profile: ProfileName;
  seed: number;
  json: boolean;
  /** 0: any free port. */
  metricsPort: number;
  help: boolean;
}

export const DEFAULTS = {
  requests: 400,
  concurrency: 20,
  profile: 'flaky',
  seed: 1,
  metricsPort: 0,
} as const;

export class UsageError extends Error {
  override name = 'UsageError';
}

export function usage(): string {
  const profiles = PROFILE_NAMES.map((name) => `    ${name.padEnd(13)} ${PROFILES[name].description}`).join(
    '\n',
  );
  return `Usage: npm start -- [options]      (or: npx tsx examples/demo.ts [options])

Runs the same fan-out job twice against an embedded, misbehaving upstream — once with a plain
undici Agent and a hand-written retry loop, once through Breakwater's standardPipeline — and
prints a side-by-side table.

Options:
  --requests <n>      logical requests per run (default ${DEFAULTS.requests}; 1-100000)
  --concurrency <n>   logical requests in progress at once (default ${DEFAULTS.concurrency}; 1-1000)
  --profile <name>    the upstream's fault profile (default ${DEFAULTS.profile}):
${profiles}
  --seed <n>          seed of the fault sequence; same seed, same faults (default ${DEFAULTS.seed})
  --metrics-port <n>  port of Breakwater's /metrics while the demo runs (default: a free one)
  --json              print one JSON object with the results instead of the table
  -h, --help          show this help
`;
}

export function parseCli(argv: readonly string[]): DemoOptions {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        requests: { type: 'string' },
        concurrency: { type: 'string' },
        profile: { type: 'string' },
        seed: { type: 'string' },
        'metrics-port': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UsageError(parseArgsMessage(err));
  }
  const profile = (values.profile as string | undefined) ?? DEFAULTS.profile;
  if (!isProfileName(profile)) {
    throw new UsageError(`--profile must be one of ${PROFILE_NAMES.join(', ')}; got '${profile}'`);
  }
  return {
    requests: integerFlag('requests', values.requests, DEFAULTS.requests, 1, 100_000),
    concurrency: integerFlag('concurrency', values.concurrency, DEFAULTS.concurrency, 1, 1_000),
    profile,
    seed: integerFlag('seed', values.seed, DEFAULTS.seed, 0, 2 ** 32 - 1),
    metricsPort: integerFlag('metrics-port', values['metrics-port'], DEFAULTS.metricsPort, 0, 65_535),
    json: values.json === true,
    help: values.help === true,
  };
}

function integerFlag(name: string, raw: unknown, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const text = String(raw);
  const value = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}; got '${text}'`);
  }
  return value;
}

/** parseArgs' messages are long and suggest `--` tricks; one short line per case reads better. */
function parseArgsMessage(err: unknown): string {
  const code = (err as { code?: string }).code;
  const message = err instanceof Error ? err.message : String(err);
  const quoted = /'([^']*)'/.exec(message)?.[1];
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${quoted ?? message}`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument '${quoted ?? message}' (options start with --)`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const option = (quoted ?? '').replace(/ <value>$/, '');
      if (message.includes('argument missing')) return `${option} needs a value`;
      if (message.includes('does not take an argument')) return `${option} takes no value`;
      if (message.includes('ambiguous'))
        return `${option}: write a value that starts with '-' as ${option}=<value>`;
      return message.split('\n')[0]!;
    }
    default:
      return message.split('\n')[0]!;
  }
}
