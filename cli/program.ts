import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { type Env, apiUrl, parseReadStore, readEnv } from '../infra/config/env';
import { CliError, EXIT, type ExitCode, isCliError } from './client';
import { registerDeviceCommands } from './devices';
import { registerOperatorCommands } from './operator';
import { registerPolicyCommands } from './policy';
import { registerRegistryCommands } from './registry';
import { registerTelemetryCommands } from './telemetry';
import { type Io, json } from './output';
import { progressBar } from './progress';
import { table } from './table';
import { VERSION } from './version';

import type { Projector } from '../projections';
import { ROLES, type Role } from './role-names';

// The cloud roles, the projector and NATS are loaded only by the commands that use them (dynamic
// imports), so an operator command starts without parsing them.

const EXIT_CODES_HELP = `
Exit codes:
  0  ok
  1  unexpected error (API unreachable, server error)
  2  usage or validation error (bad option, invalid column actions)
  3  not found (unknown id, or an id of another project)
  4  conflict (stale action_version, illegal transition, already decided)
  5  authentication or permission (no/unknown token, read-only token)

Operator commands talk to the HTTP API: --api (SLUICE_API_URL; default the API of this
environment, http://SLUICE_API_HOST:SLUICE_API_PORT, i.e. http://127.0.0.1:8080 as \`make run\`
starts it), --token (SLUICE_TOKEN), --project (SLUICE_PROJECT_ID).`;

/** Roles keep the process alive after their action returns; everything else ends with its exit code. */
export type CliOutcome = Readonly<{ code: ExitCode; daemon: boolean }>;

async function runRoles(env: Env, roles: readonly Role[], only?: string[]): Promise<void> {
  const { startRoles } = await import('./roles.js');
  const running = await startRoles(env, roles, only ? { only } : {});
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    running.log.info({ signal }, 'shutting down');
    await running.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}

function buildProgram(io: Io, state: { daemon: boolean }, env: Env): Command {
  const program = new Command();
  program
    .name('sluice')
    .description('Sluice cloud roles and operator tools.')
    .version(VERSION, '-V, --version', 'print the version')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => void io.out(s), writeErr: (s) => io.err(s) })
    .addHelpText('after', EXIT_CODES_HELP);

  program
    .command('all')
    .description('run every cloud role in one process (bridge, worker, projector, api)')
    .action(async () => {
      state.daemon = true;
      await runRoles(env, ROLES);
    });
  for (const role of ROLES) {
    const cmd = program.command(role).description(`run the ${role} role alone`);
    if (role === 'projector') cmd.addOption(new Option('--only <names...>', 'run only these projections'));
    cmd.action(async (o: { only?: string[] }) => {
      state.daemon = true;
      await runRoles(env, [role], o.only);
    });
  }

  const projections = program
    .command('projections')
    .description('inspect and rebuild read-store projections (talks to NATS and the read store directly)');
  projections
    .command('status')
    .description('checkpoint vs stream head for every projection (never creates a read store)')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      const where = describeStore(env);
      io.err(`NATS ${env.SLUICE_NATS_URL}, read store ${where}\n`);
      const { status } = await withProjector(env, 'sluice projections status', (p) => p.status(), {
        mustExist: true,
      });
      if (o.json) await io.out(json({ nats: env.SLUICE_NATS_URL, read_store: where, projections: status }));
      else await io.out(statusTable(status));
    });
  projections
    .command('rebuild <name>')
    .description('drop a projection and refold it from the first event, with progress')
    .action(async (name: string) => {
      io.err(`NATS ${env.SLUICE_NATS_URL}, read store ${describeStore(env)}\n`);
      const bar = await progressBar(io, name, 'events');
      try {
        await withProjector(env, 'sluice projections rebuild', (projector) =>
          projector.rebuild(name, (p) => bar.update(Math.min(p.position, p.target), Math.max(p.target, 1))),
        );
      } finally {
        bar.stop();
      }
      await io.out(`rebuilt ${name}\n`);
    });

  registerOperatorCommands(program, io);
  registerDeviceCommands(program, io);
  registerRegistryCommands(program, io);
  registerPolicyCommands(program, io);
  registerTelemetryCommands(program, io);
  withSettings(program, env);
  return program;
}

/** Give every operator verb its defaults from the one settings reader (infra/config/env). */
function withSettings(cmd: Command, env: Env): void {
  const defaults: Record<string, [value: string | undefined, shown?: string]> = {
    '--api': [apiUrl(env)],
    '--project': [env.SLUICE_PROJECT_ID],
    '--token': [env.SLUICE_TOKEN, '$SLUICE_TOKEN'],
  };
  for (const o of cmd.options) {
    const d = o.long ? defaults[o.long] : undefined;
    if (!d || d[0] === undefined) continue;
    o.default(d[0], d[1]); // what --help shows
    cmd.setOptionValueWithSource(o.attributeName(), d[0], 'default'); // what parsing starts from
  }
  for (const sub of cmd.commands) withSettings(sub, env);
}

/** The read store as a person recognises it: the absolute SQLite path, or the PostgreSQL URL without its password. */
function describeStore(env: Env): string {
  const loc = parseReadStore(env.SLUICE_READ_STORE);
  if (loc.kind === 'sqlite') return `sqlite:${resolve(loc.path)}`;
  try {
    const u = new URL(loc.url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres (unparsable URL)';
  }
}

/**
 * Run `fn` with a projector over this environment's NATS and read store, then close them. With
 * `mustExist`, a SQLite store that is not there is an error instead of a new empty file.
 */
async function withProjector<T>(
  env: Env,
  name: string,
  fn: (p: Projector) => Promise<T>,
  o: { mustExist?: boolean } = {},
): Promise<{ status: T }> {
  const loc = parseReadStore(env.SLUICE_READ_STORE);
  if (o.mustExist && loc.kind === 'sqlite' && !existsSync(loc.path))
    throw new CliError(
      EXIT.notFound,
      `no read store at ${resolve(loc.path)}`,
      'set SLUICE_READ_STORE to the store the projector writes (`make run` uses sqlite:.data/sluice.db of the repository)',
    );
  const [{ createLogger }, { connectNats, openStore }, { startProjector }] = await Promise.all([
    import('../infra/log.js'),
    import('./roles/shared.js'),
    import('../projections/index.js'),
  ]);
  const log = createLogger({ level: 'warn', name: 'sluice' });
  const nc = await connectNats(env, log, name);
  try {
    const store = await openStore(env);
    try {
      const projector = await startProjector({ nc, store, log, only: [] });
      try {
        return { status: await fn(projector) };
      } finally {
        await projector.stop();
      }
    } finally {
      await store.close();
    }
  } finally {
    await nc.close();
  }
}

type StatusRow = Readonly<{ name: string } & Record<string, unknown>>;
function statusTable(rows: readonly StatusRow[]): string {
  if (rows.length === 0) return 'no projections\n';
  return table(
    rows,
    Object.keys(rows[0]!).map((k) => ({ header: k.toUpperCase(), get: (r: StatusRow) => r[k] })),
  );
}

/** Print an error the way scripts and people both need it, and pick the exit code. */
function report(io: Io, err: unknown, asJson: boolean): ExitCode {
  if (err instanceof CommanderError) {
    // Help and version exit 0; every other parse error is a usage error (already printed).
    if (err.exitCode === 0) return EXIT.ok;
    if (asJson)
      void io.out(
        json({
          ok: false,
          exit_code: EXIT.usage,
          error: { code: 'usage', message: err.message.replace(/^error: /, '') },
        }),
      );
    return EXIT.usage;
  }
  const e: CliError = isCliError(err)
    ? err
    : new CliError(EXIT.unexpected, (err as Error)?.message ?? String(err));
  io.err(`sluice: ${e.message}\n${e.hint ? `  ${e.hint}\n` : ''}`);
  if (asJson)
    void io.out(
      json({
        ok: false,
        exit_code: e.exitCode,
        error: {
          code: e.body?.code ?? (e.exitCode === EXIT.usage ? 'usage' : 'error'),
          message: e.message,
          ...(e.body?.status ? { status: e.body.status } : {}),
          ...(e.body?.details ? { details: e.body.details } : {}),
          ...(e.hint ? { hint: e.hint } : {}),
        },
      }),
    );
  return e.exitCode;
}

/** Run `sluice` with these arguments (without `node` and the script). */
export async function runCli(
  args: readonly string[],
  io: Io,
  source: NodeJS.ProcessEnv = process.env,
): Promise<CliOutcome> {
  const state = { daemon: false };
  try {
    let env: Env;
    try {
      env = readEnv(source);
    } catch (err) {
      throw new CliError(EXIT.usage, (err as Error).message);
    }
    const program = buildProgram(io, state, env);
    await program.parseAsync([...args], { from: 'user' });
    return { code: EXIT.ok, daemon: state.daemon };
  } catch (err) {
    return { code: report(io, err, args.includes('--json')), daemon: false };
  }
}
