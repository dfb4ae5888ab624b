import { Command, Option } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import { readEnv } from '../infra/config/env';
import { connectNats, openStore, ROLES, type Role, startRoles } from './roles';
import { createLogger } from '../infra/log';
import { startProjector } from '../projections';

const program = new Command();
program.name('sluice').description('Sluice cloud roles and operator tools.').showHelpAfterError();

async function runRoles(roles: readonly Role[], only?: string[]): Promise<void> {
  const env = readEnv();
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

program
  .command('all')
  .description('run every cloud role in one process (bridge, worker, projector, api)')
  .action(() => runRoles(ROLES));
for (const role of ROLES) {
  const cmd = program.command(role).description(`run the ${role} role alone`);
  if (role === 'projector') cmd.addOption(new Option('--only <names...>', 'run only these projections'));
  cmd.action((o: { only?: string[] }) => runRoles([role], o.only));
}

const projections = program.command('projections').description('inspect and rebuild read-store projections');
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
    if (o.json) console.log(JSON.stringify(status, null, 2));
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
    console.log(`rebuilt ${name}`);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(`sluice: ${(err as Error).message}`);
  process.exit(1);
});
