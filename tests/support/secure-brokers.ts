import { execFileSync } from 'node:child_process';
import { chownSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { issueCert, renderBrokerFiles, writeCertFiles } from '../../infra/security/ca';
import { type CredentialStore, TEMPLATES, fillTemplate, renderInto } from '../../infra/security/credentials';
import { freePort, type Managed, startProcess, tempDir, waitPort } from './proc';
import { waitFor } from './wait';

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

export type TlsBroker = SecureBroker & {
  /** mqtts:// URL of the device listener (mutual TLS, certificate identities). */
  mqttUrl: string;
  /** mqtts:// URL of Mosquitto's password listener (the bridge); NATS has one MQTT listener. */
  passwordMqttUrl?: string;
  /** tls:// URL of the cloud roles (NATS only). */
  natsUrl?: string;
  /** The CA the brokers' certificates chain to (and device certificates are checked against). */
  ca: Buffer;
  caFile: string;
  /** Re-read the rendered files as the docs say: NATS reloads (SIGHUP), Mosquitto restarts. */
  apply: () => Promise<void>;
};

/** A server certificate for 127.0.0.1 and localhost, from the test's CA, into the broker's directory. */
function serverCert(caDir: string, dir: string): void {
  writeCertFiles(dir, issueCert(caDir, { server: ['localhost', '127.0.0.1'] }), 'server');
}

/** nats-server from the shipped TLS template: TLS client port, mutual-TLS MQTT with verify_and_map. */
export async function startTlsNats(store: CredentialStore, caDir: string): Promise<TlsBroker> {
  const dir = tempDir('nats-tls');
  const [port, mqttPort] = [await freePort(), await freePort()];
  serverCert(caDir, dir);
  renderBrokerFiles(store, caDir, dir);
  const conf = join(dir, 'nats-server.conf');
  writeFileSync(
    conf,
    fillTemplate(readFileSync(TEMPLATES.natsTls, 'utf8'), {
      SERVER_NAME: `sluice_tls_${port}`,
      NATS_LISTEN: `127.0.0.1:${port}`,
      MQTT_LISTEN: `127.0.0.1:${mqttPort}`,
      STORE_DIR: join(dir, 'js'),
      CONF_DIR: dir,
    }),
  );
  const proc: Managed = startProcess(NATS_BIN, ['-c', conf]);
  await waitPort(port, `nats-server (${proc.output().slice(-500)})`);
  await waitPort(mqttPort, 'nats-server mqtt listener');
  let reloads = 0;
  return {
    mqttUrl: `mqtts://127.0.0.1:${mqttPort}`,
    natsUrl: `tls://127.0.0.1:${port}`,
    ca: readFileSync(join(dir, 'ca.crt')),
    caFile: join(dir, 'ca.crt'),
    dir,
    output: proc.output,
    stop: proc.stop,
    apply: async () => {
      const seen = (proc.output().match(/Reloaded server configuration/g) ?? []).length;
      reloads = Math.max(reloads, seen) + 1;
      proc.child.kill('SIGHUP');
      await waitFor(() => (proc.output().match(/Reloaded server configuration/g) ?? []).length >= reloads, {
        message: () => `nats-server reload (${proc.output().slice(-300)})`,
      });
    },
  };
}

/**
 * Mosquitto from the shipped TLS template. As root it runs exactly as docs/security.md says: the
 * directory belongs to `mosquitto` (every rendered file follows its owner) and the config has no
 * `user root`, so the broker drops its privileges and still reads everything.
 */
export async function startTlsMosquitto(store: CredentialStore, caDir: string): Promise<TlsBroker> {
  const dir = tempDir('mosquitto-tls');
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'mosquitto'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'mosquitto'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  const [port, tlsPort] = [await freePort(), await freePort()];
  serverCert(caDir, dir);
  renderBrokerFiles(store, caDir, dir);
  copyFileSync(TEMPLATES.mosquittoAcl, join(dir, 'acl.conf'));
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    fillTemplate(readFileSync(TEMPLATES.mosquittoTls, 'utf8'), {
      PORT: port,
      TLS_PORT: tlsPort,
      HOST: '127.0.0.1',
      CONF_DIR: dir,
      DATA_DIR: dir,
    }),
  );
  let proc = startProcess(MOSQUITTO_BIN, ['-c', conf]);
  const up = async () => {
    await waitPort(port, `mosquitto (${proc.output().slice(-500)})`);
    await waitPort(tlsPort, 'mosquitto TLS listener');
  };
  await up();
  return {
    mqttUrl: `mqtts://127.0.0.1:${tlsPort}`,
    passwordMqttUrl: `mqtts://127.0.0.1:${port}`,
    ca: readFileSync(join(dir, 'ca.crt')),
    caFile: join(dir, 'ca.crt'),
    dir,
    output: () => proc.output(),
    stop: () => proc.stop(),
    apply: async () => {
      // SIGHUP re-reads crlfile for new connections but leaves a revoked certificate's open
      // connections up; a restart (persistent sessions and queued messages survive it) ends them.
      await proc.stop();
      proc = startProcess(MOSQUITTO_BIN, ['-c', conf]);
      await up();
    },
  };
}
