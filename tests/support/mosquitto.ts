import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, type Managed, startProcess, tempDir, waitPort } from './proc';

export type MosquittoServer = {
  url: string;
  port: number;
  dir: string;
  start: () => Promise<void>;
  stop: () => Promise<void>;
  kill: () => Promise<void>;
  restart: () => Promise<void>;
  output: () => string;
  /** The running broker's process id (benchmarks read its memory from /proc). */
  pid: () => number | undefined;
};

const MOSQUITTO_BIN =
  process.env.MOSQUITTO_BIN ?? (process.getuid?.() === 0 ? '/usr/sbin/mosquitto' : 'mosquitto');

/** A private Mosquitto on a free loopback port; `persistence` keeps its store in a temp dir. */
export async function startMosquitto(
  opts: { persistence?: boolean; extraConfig?: string } = {},
): Promise<MosquittoServer> {
  const dir = tempDir('mosquitto');
  const port = await freePort();
  const configFile = join(dir, 'mosquitto.conf');
  writeFileSync(
    configFile,
    [
      `listener ${port} 127.0.0.1`,
      opts.extraConfig?.includes('password_file') ? '' : 'allow_anonymous true',
      `persistence ${opts.persistence ? 'true' : 'false'}`,
      `persistence_location ${dir}/`,
      'max_inflight_messages 100',
      'max_queued_messages 100000',
      process.getuid?.() === 0 ? 'user root' : '',
      opts.extraConfig ?? '',
    ].join('\n'),
  );
  let proc: Managed | undefined;
  const server: MosquittoServer = {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    dir,
    output: () => proc?.output() ?? '',
    pid: () => proc?.child.pid,
    start: async () => {
      proc = startProcess(MOSQUITTO_BIN, ['-c', configFile]);
      await waitPort(port, 'mosquitto');
    },
    stop: async () => {
      await proc?.stop();
    },
    kill: async () => {
      await proc?.kill();
    },
    restart: async () => {
      await server.stop();
      await server.start();
    },
  };
  await server.start();
  return server;
}
