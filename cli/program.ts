import { Command, CommanderError, Option } from 'commander';
import { Presets, SingleBar } from 'cli-progress';
import { readEnv } from '../infra/config/env';
import { createLogger } from '../infra/log';
import { startProjector } from '../projections';
import { CliError, EXIT, type ExitCode, isCliError } from './client';
import { registerDeviceCommands } from './devices';
import { registerOperatorCommands } from './operator';
import { registerRegistryCommands } from './registry';
import { type Io, json } from './output';
import { ROLES, type Role, connectNats, openStore, readRoleOptions, startRoles } from './roles';

const EXIT_CODES_HELP = `
Exit codes:
  0  ok
  1  unexpected error (API unreachable, server error)
  2  usage or validation error (bad option, invalid column actions)
  3  not found (unknown id, or an id of another project)
  4  conflict (stale action_version, illegal transition, already decided)
  5  authentication or permission (no/unknown token, read-only token)

Operator commands talk to the HTTP API: --api (SLUICE_API_URL, default http://127.0.0.1:8080),
--token (SLUICE_TOKEN), --project (SLUICE_PROJECT_ID).`;

/** Roles keep the process alive after their action returns; everything else ends with its exit code. */
export type CliOutcome = Readonly<{ code: ExitCode; daemon: boolean }>;

async function runRoles(roles: readonly Role[], only?: string[]): Promise<void> {
  const env = readEnv();
  const running = await startRoles(env, roles, {
    ...readRoleOptions(process.env),
    ...(only ? { only } : {}),
  });
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

function buildProgram(io: Io, state: { daemon: boolean }): Command {
  const program = new Command();
  program
    .name('sluice')
    .description('Sluice cloud roles and operator tools.')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => void io.out(s), writeErr: (s) => io.err(s) })
    .addHelpText('after', EXIT_CODES_HELP);

  program
    .command('all')
    .description('run every cloud role in one process (bridge, worker, projector, api)')
    .action(async () => {
      state.daemon = true;
      await runRoles(ROLES);
    });
  for (const role of ROLES) {
    const cmd = program.command(role).description(`run the ${role} role alone`);
    if (role === 'projector') cmd.addOption(new Option('--only <names...>', 'run only these projections'));
    cmd.action(async (o: { only?: string[] }) => {
      state.daemon = true;
      await runRoles([role], o.only);
    });
  }

  const projections = program
    .command('projections')
    .description('inspect and rebuild read-store projections (talks to NATS and the read store directly)');
  projections
    .command('status')
    .description('checkpoint vs stream head for every projection')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      const env = readEnv();
      const log = createLogger({ level: 'warn' });
      const nc = await connectNats(env, log, 'sluice projections status');
      const store = await openStore(env);
      const projector = await startProjector({ nc, store, log, only: [] });
      const status = await projector.status();
      await projector.stop();
      if (o.json) await io.out(json(status));
      else console.table(status);
      await store.close();
      await nc.close();
    });
  projections
    .command('rebuild <name>')
    .description('drop a projection and refold it from the first event, with progress')
    .action(async (name: string) => {
      const env = readEnv();
      const log = createLogger({ level: 'warn' });
      const nc = await connectNats(env, log, 'sluice projections rebuild');
      const store = await openStore(env);
      const projector = await startProjector({ nc, store, log, only: [] });
      const bar = new SingleBar(
        { format: `${name} [{bar}] {percentage}% | {value}/{total} events | {eta}s left` },
        Presets.shades_classic,
      );
      let started = false;
      await projector.rebuild(name, (p) => {
        if (!started) {
          bar.start(Math.max(p.target, 1), 0);
          started = true;
        }
        bar.setTotal(Math.max(p.target, 1));
        bar.update(Math.min(p.position, p.target));
      });
      if (started) bar.stop();
      await projector.stop();
      await store.close();
      await nc.close();
      await io.out(`rebuilt ${name}\n`);
    });

  registerOperatorCommands(program, io);
  registerDeviceCommands(program, io);
  registerRegistryCommands(program, io);
  return program;
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
export async function runCli(args: readonly string[], io: Io): Promise<CliOutcome> {
  const state = { daemon: false };
  const program = buildProgram(io, state);
  try {
    await program.parseAsync([...args], { from: 'user' });
    return { code: EXIT.ok, daemon: state.daemon };
  } catch (err) {
    return { code: report(io, err, args.includes('--json')), daemon: false };
  }
}
