import { VERSION as VERSION_OF_AGENT } from '../cli/version';
import { buildCli } from './cli';

// The `sluice-agent` entry point (bin/sluice-agent runs its compiled form, dist/sluice-agent.mjs).
buildCli()
  .version(VERSION_OF_AGENT, '-V, --version', 'print the version')
  .parseAsync(process.argv)
  .catch((err: Error) => {
    console.error(`sluice-agent: ${err.message}`);
    process.exit(1);
  });
