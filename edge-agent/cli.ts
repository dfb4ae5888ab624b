import { Command } from 'commander';
import { formatProblem, loadAgentConfig } from './config/load';
import { agentLogger } from './log';

/** `sluice-agent run|validate --config F`. The composition root: the only place reading process.env. */
export function buildCli(): Command {
  const program = new Command('sluice-agent').description(
    'Capture changes of a device SQLite database and replicate them to the Sluice cloud over MQTT.',
  );

  program
    .command('validate')
    .description(
      'check a config file, and its filters and ts_column against the database; prints every problem with its path in the YAML',
    )
    .requiredOption('-c, --config <file>', 'device config (YAML)')
    .action(async (opts: { config: string }) => {
      const res = loadAgentConfig(opts.config, process.env);
      // The filters and ts_column against the application database, once the file itself is sound
      // (loaded here: `--help` never opens SQLite).
      const { checkAgainstDatabase } = await import('./config/check-db.js');
      const db = res.ok ? checkAgainstDatabase(res.config) : { problems: [], warnings: [] };
      for (const w of [...res.warnings, ...db.warnings]) console.log(`warning: ${formatProblem(w)}`);
      const problems = [...(res.ok ? [] : res.problems), ...db.problems];
      if (problems.length > 0) {
        for (const p of problems) console.error(`error: ${formatProblem(p)}`);
        console.error(`${opts.config}: ${problems.length} problem(s); nothing was started.`);
        process.exitCode = 1;
        return;
      }
      if (!res.ok) return;
      console.log(
        `${opts.config}: OK (device ${res.config.connection.deviceId}, root ${res.config.connection.rootTopic})`,
      );
    });

  program
    .command('run')
    .description('run the agent until SIGTERM/SIGINT')
    .requiredOption('-c, --config <file>', 'device config (YAML)')
    .action(async (opts: { config: string }) => {
      const res = loadAgentConfig(opts.config, process.env);
      if (!res.ok) {
        for (const p of res.problems) console.error(`error: ${formatProblem(p)}`);
        console.error(
          `${opts.config}: ${res.problems.length} problem(s); the agent did not start. Nothing was captured or ` +
            `changed. Fix them, then check with: sluice-agent validate --config ${opts.config}`,
        );
        process.exitCode = 1;
        return;
      }
      const log = agentLogger(res.config.connection.deviceId, process.env.SLUICE_LOG_LEVEL);
      for (const w of res.warnings) log.warn({ event: 'config_warning', path: w.path }, w.message);
      // Loaded here, not at start: `validate` and `--help` never parse the agent's runtime.
      const { startAgent } = await import('./main.js');
      const agent = await startAgent(res.config, { logger: log });
      let stopping = false;
      const shutdown = (sig: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ event: 'signal', signal: sig }, 'stopping');
        agent.stop().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
    });

  return program;
}
