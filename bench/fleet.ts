/**
 * Many devices in one process: one real agent (`startAgent`, the agent's programmatic API) per
 * config file given on the command line. Prints `fleet ready N` once every agent runs; stops them
 * all on SIGTERM. Used by the benchmark's 50-device stage; each agent has its own application
 * database, state.db, MQTT session and lineage.
 */
import { loadAgentConfig } from '../edge-agent/config/load';
import { silentLogger } from '../infra/log';
import { type AgentHandle, startAgent } from '../edge-agent/main';

async function main(): Promise<void> {
  const files = process.argv.slice(2);
  const agents: AgentHandle[] = [];
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await Promise.all(agents.map((a) => a.stop().catch(() => undefined)));
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  for (const f of files) {
    const res = loadAgentConfig(f, process.env);
    if (!res.ok) throw new Error(`${f}: ${res.problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`);
    agents.push(await startAgent(res.config, { logger: silentLogger() }));
  }
  console.log(`fleet ready ${agents.length}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
