import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type CredentialStore, TEMPLATES, fillTemplate, renderInto } from '../../infra/security/credentials';
import { freePort, type Managed, startProcess, tempDir, waitPort } from './proc';

export type SecureBroker = {
  /** MQTT URL devices and the bridge connect to. */
  mqttUrl: string;
  /** NATS URL of the cloud roles (NATS only). */
  natsUrl?: string;
  dir: string;
  output: () => string;
  stop: () => Promise<void>;
};

const MOSQUITTO_BIN =
  process.env.MOSQUITTO_BIN ?? (process.getuid?.() === 0 ? '/usr/sbin/mosquitto' : 'mosquitto');
const NATS_BIN = process.env.NATS_SERVER_BIN ?? 'nats-server';

/** nats-server from the shipped template and the rendered credentials, on free loopback ports. */
export async function startSecureNats(store: CredentialStore): Promise<SecureBroker> {
  const dir = tempDir('nats-secure');
  const [port, mqttPort] = [await freePort(), await freePort()];
  renderInto(store, dir);
  const conf = join(dir, 'nats-server.conf');
  writeFileSync(
    conf,
    fillTemplate(readFileSync(TEMPLATES.nats, 'utf8'), {
      SERVER_NAME: `sluice_secure_${port}`,
      NATS_LISTEN: `127.0.0.1:${port}`,
      MQTT_LISTEN: `127.0.0.1:${mqttPort}`,
      STORE_DIR: join(dir, 'js'),
    }),
  );
  const proc: Managed = startProcess(NATS_BIN, ['-c', conf]);
  await waitPort(port, `nats-server (${proc.output().slice(-500)})`);
  await waitPort(mqttPort, 'nats-server mqtt listener');
  return {
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    natsUrl: `nats://127.0.0.1:${port}`,
    dir,
    output: proc.output,
    stop: proc.stop,
  };
}

/** Mosquitto from the shipped template and ACL, with the rendered password file. */
export async function startSecureMosquitto(store: CredentialStore): Promise<SecureBroker> {
  const dir = tempDir('mosquitto-secure');
  const port = await freePort();
  renderInto(store, dir);
  copyFileSync(TEMPLATES.mosquittoAcl, join(dir, 'acl.conf'));
  const conf = join(dir, 'mosquitto.conf');
  const filled = fillTemplate(readFileSync(TEMPLATES.mosquitto, 'utf8'), {
    PORT: port,
    HOST: '127.0.0.1',
    CONF_DIR: dir,
    DATA_DIR: dir,
  });
  // As root Mosquitto would drop to the `mosquitto` user, who cannot read a private temp dir.
  writeFileSync(conf, `${filled}\n${process.getuid?.() === 0 ? 'user root\n' : ''}`);
  const proc = startProcess(MOSQUITTO_BIN, ['-c', conf]);
  await waitPort(port, `mosquitto (${proc.output().slice(-500)})`);
  return { mqttUrl: `mqtt://127.0.0.1:${port}`, dir, output: proc.output, stop: proc.stop };
}
