import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, type Managed, startProcess, tempDir, waitPort } from './proc';

export type NatsServer = {
  url: string;
  mqttUrl: string;
  port: number;
  mqttPort: number;
  storeDir: string;
  configFile: string;
  /** Stop (SIGTERM) and start again on the same ports and store. */
  restart: () => Promise<void>;
  kill: () => Promise<void>;
  start: () => Promise<void>;
  stop: () => Promise<void>;
  output: () => string;
  /** The running server's process id (benchmarks read its memory from /proc). */
  pid: () => number | undefined;
};

const NATS_BIN = process.env.NATS_SERVER_BIN ?? 'nats-server';

/** A private nats-server with JetStream and its MQTT listener, on free loopback ports. */
export async function startNats(
  opts: { extraConfig?: string; syncAlways?: boolean } = {},
): Promise<NatsServer> {
  const dir = tempDir('nats');
  const port = await freePort();
  const mqttPort = await freePort();
  const storeDir = join(dir, 'js');
  const configFile = join(dir, 'nats.conf');
  writeFileSync(
    configFile,
    [
      `server_name: sluice_test_${port}`,
      `listen: 127.0.0.1:${port}`,
      `max_payload: 8MB`,
      `jetstream { store_dir: ${JSON.stringify(storeDir)}${opts.syncAlways ? ', sync_interval: always' : ''} }`,
      `mqtt { listen: 127.0.0.1:${mqttPort} }`,
      opts.extraConfig ?? '',
    ].join('\n'),
  );
  let proc: Managed | undefined;
  const server: NatsServer = {
    url: `nats://127.0.0.1:${port}`,
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    port,
    mqttPort,
    storeDir,
    configFile,
    output: () => proc?.output() ?? '',
    pid: () => proc?.child.pid,
    start: async () => {
      proc = startProcess(NATS_BIN, ['-c', configFile]);
      await waitPort(port, 'nats-server');
      await waitPort(mqttPort, 'nats-server mqtt listener');
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
