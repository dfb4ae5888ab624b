import type { Command } from 'commander';
import {
  type CredentialStore,
  type Issued,
  SERVICES,
  type Service,
  issueDevice,
  issueService,
  loadStore,
  revokeDevice,
  saveStore,
} from '../infra/security/credentials';
import { renderBrokerFiles } from '../infra/security/ca';
import { DEFAULT_CA_DIR, deviceRootArg, registerCertCommands } from './certs';
import { CliError, EXIT } from './client';
import { type Io, json } from './output';

const DEFAULT_STORE = 'infra/credentials.json';

type StoreOpts = { store: string; out?: string; json?: boolean; caDir?: string };

/**
 * `sluice devices credentials …`: per-device MQTT credentials for the shipped broker configs
 * (docs/security.md). The store holds hashes only; a password is printed once, when issued.
 */
export function registerDeviceCommands(program: Command, io: Io): void {
  // `devices` may exist already (fleets, cli/registry.ts): credentials join it.
  const devices =
    program.commands.find((c) => c.name() === 'devices') ??
    program.command('devices').description('devices: fleets and broker credentials');
  registerCertCommands(devices, io);
  const creds = devices
    .command('credentials')
    .description('issue, revoke and render per-device broker credentials');
  const storeOption = (c: Command) =>
    c
      .option('--store <file>', 'credential store (hashes only; keep it private)', DEFAULT_STORE)
      .option('--out <dir>', 'also write the broker files (auth.conf, mosquitto.passwd) into this directory')
      .option('--json', 'machine-readable output')
      .option('--ca-dir <dir>', 'the device CA whose certificates are rendered too', DEFAULT_CA_DIR);

  const finish = async (o: StoreOpts, store: CredentialStore, issued?: Issued) => {
    saveStore(o.store, store);
    const written = o.out ? renderBrokerFiles(store, o.caDir, o.out) : [];
    if (o.json) {
      await io.out(
        json({
          ok: true,
          ...(issued
            ? { username: issued.username, password: issued.password, replaced: issued.replaced }
            : {}),
          written,
        }),
      );
      return;
    }
    if (issued) {
      await io.out(`username: ${issued.username}\npassword: ${issued.password}\n`);
      io.err(
        `${issued.replaced ? 'replaced the password of' : 'issued'} ${issued.username} in ${o.store}. ` +
          'The password is shown only now: give it to the device (connection.mqtt.password_env).\n',
      );
    }
    if (written.length) io.err(`wrote ${written.join(', ')}; reload the broker to apply.\n`);
    else io.err('broker files not written: run `sluice devices credentials render --out DIR`.\n');
  };

  storeOption(
    creds
      .command('issue [root]')
      .description('a new password for a device (root = {topic_slug}/{device_name}) or a cloud service')
      .option('--service <name>', `a cloud service instead: ${Object.keys(SERVICES).join(' | ')}`),
  ).action(async (root: string | undefined, o: StoreOpts & { service?: string }) => {
    let store = loadStore(o.store);
    let issued: Issued;
    if (o.service !== undefined) {
      if (!(o.service in SERVICES))
        throw new CliError(EXIT.usage, `unknown service ${JSON.stringify(o.service)}`, 'use bridge or cloud');
      issued = issueService(store, o.service as Service);
    } else {
      issued = issueDevice(store, deviceRootArg(root, ' or --service'));
    }
    store = issued.store;
    await finish(o, store, issued);
  });

  storeOption(
    creds.command('revoke <root>').description('remove a device; it cannot connect once the broker reloads'),
  ).action(async (root: string, o: StoreOpts) => {
    const r = revokeDevice(loadStore(o.store), root);
    if (!r.found)
      throw new CliError(EXIT.notFound, `no credentials for ${root} in ${o.store}`, 'nothing was changed');
    await finish(o, r.store);
  });

  creds
    .command('render')
    .description('write the broker files from the store')
    .option('--store <file>', 'credential store', DEFAULT_STORE)
    .requiredOption('--out <dir>', 'directory of nats-server.conf / mosquitto.conf')
    .option('--ca-dir <dir>', 'the device CA whose certificates are rendered too', DEFAULT_CA_DIR)
    .action(async (o: StoreOpts) => {
      const written = renderBrokerFiles(loadStore(o.store), o.caDir, o.out!);
      await io.out(`${written.join('\n')}\n`);
    });

  creds
    .command('list')
    .description('usernames in the store, with when they were issued')
    .option('--store <file>', 'credential store', DEFAULT_STORE)
    .option('--json', 'machine-readable output')
    .action(async (o: StoreOpts) => {
      const s = loadStore(o.store);
      const rows = [
        ...Object.entries(s.services).map(([k, e]) => ({
          username: e.username,
          kind: k,
          issued_at: e.issued_at,
        })),
        ...s.devices.map((e) => ({ username: e.username, kind: 'device', issued_at: e.issued_at })),
      ];
      if (o.json) await io.out(json({ items: rows }));
      else await io.out(rows.map((r) => `${r.username}\t${r.kind}\t${r.issued_at}\n`).join(''));
    });
}
