import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import bcrypt from 'bcryptjs';
import { z } from 'zod';
import { CONTROL_TOPIC, RECEIPT_TOPIC, UPLINK_TOPICS } from '../../domain/protocol/contracts';

/**
 * Per-device broker credentials. A device's MQTT username IS its root topic
 * (`{topic_slug}/{device_name}`, or `/{device_name}` without a slug), so the broker can tie every
 * topic to the connection: Mosquitto with `pattern … %u/…` lines, NATS with one user per device
 * whose permissions name the device's own subjects. The store keeps password hashes only; a
 * password is shown once, when it is issued.
 */

/** The broker users of the cloud side. */
export const BRIDGE_USER = 'sluice-bridge';
export const CLOUD_USER = 'sluice-cloud';
export const SERVICES = { bridge: BRIDGE_USER, cloud: CLOUD_USER } as const;
export type Service = keyof typeof SERVICES;

/**
 * Letters, digits, `_` and `-` only. Stricter than what the cloud accepts from a topic: `+`, `#`
 * and `/` are MQTT syntax, `.`, `*`, `>` and white space are NATS subject syntax (the NATS MQTT
 * listener turns `/` into `.`, so a device named `*` would be granted every device's subjects),
 * and quotes would break the generated broker configs.
 */
const NAME = /^[\p{L}\p{N}_-]{1,64}$/u;

/** A root always holds a `/`, so a device user can never be named like a service user. */
export type RootCheck =
  Readonly<{ ok: true; slug: string; device: string }> | Readonly<{ ok: false; problem: string }>;

export function checkDeviceRoot(root: string): RootCheck {
  const parts = root.split('/');
  if (parts.length !== 2)
    return {
      ok: false,
      problem: `root ${JSON.stringify(root)} must be {topic_slug}/{device_name} or /{device_name}`,
    };
  const [slug, device] = parts as [string, string];
  if (slug !== '' && !NAME.test(slug))
    return {
      ok: false,
      problem: `topic slug ${JSON.stringify(slug)} may hold only letters, digits, "_" and "-" (1 to 64)`,
    };
  if (!NAME.test(device))
    return {
      ok: false,
      problem: `device name ${JSON.stringify(device)} may hold only letters, digits, "_" and "-" (1 to 64)`,
    };
  return { ok: true, slug, device };
}

/**
 * The NATS subject the NATS MQTT listener gives an MQTT topic: levels become tokens, and an empty
 * level (the leading one of `/{device}/…`) becomes the token `/`.
 */
export function natsSubjectOf(topic: string): string {
  return topic
    .split('/')
    .map((level) => (level === '' ? '/' : level))
    .join('.');
}

export const DEVICE_PUBLISH = Object.values(UPLINK_TOPICS);
export const DEVICE_SUBSCRIBE = [CONTROL_TOPIC, RECEIPT_TOPIC];

export function generatePassword(): string {
  return randomBytes(24).toString('base64url');
}

/** NATS accepts bcrypt hashes in place of passwords. */
export function natsPasswordHash(password: string, cost = 11): string {
  return bcrypt.hashSync(password, cost);
}

/** Mosquitto 2's password_file format: `$7$` PBKDF2-SHA512, as mosquitto_passwd writes it. */
export function mosquittoPasswordHash(password: string, iterations = 101): string {
  const salt = randomBytes(12);
  const hash = pbkdf2Sync(password, salt, iterations, 64, 'sha512');
  return `$7$${iterations}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

const entry = z.object({
  username: z.string().min(1),
  nats_password: z.string().startsWith('$2'),
  mosquitto_password: z.string().startsWith('$7$'),
  issued_at: z.string(),
});
export type CredentialEntry = z.infer<typeof entry>;

const storeSchema = z.object({
  format_version: z.literal(1),
  services: z.object({ bridge: entry.optional(), cloud: entry.optional() }).default({}),
  devices: z.array(entry).default([]),
});
export type CredentialStore = z.infer<typeof storeSchema>;

export const emptyStore = (): CredentialStore => ({ format_version: 1, services: {}, devices: [] });

export function loadStore(path: string): CredentialStore {
  if (!existsSync(path)) return emptyStore();
  const parsed = storeSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new Error(
      `${path} is not a Sluice credential store (${i?.path.join('.') || 'file'}: ${i?.message}); nothing was changed`,
    );
  }
  return parsed.data;
}

/** Written whole to a temp file and renamed, readable by its owner only: it holds password hashes. */
export function saveStore(path: string, store: CredentialStore): void {
  writePrivate(path, `${JSON.stringify(store, null, 2)}\n`);
}

export function writePrivate(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

export type Issued = Readonly<{
  store: CredentialStore;
  username: string;
  password: string;
  replaced: boolean;
}>;

const newEntry = (username: string, password: string, now: Date, cost?: number): CredentialEntry => ({
  username,
  nats_password: natsPasswordHash(password, cost),
  mosquitto_password: mosquittoPasswordHash(password),
  issued_at: now.toISOString(),
});

/** A new password for a device (its old one stops working once the broker configs are rendered again). */
export function issueDevice(
  store: CredentialStore,
  root: string,
  opts: { password?: string; now?: Date; bcryptCost?: number } = {},
): Issued {
  const check = checkDeviceRoot(root);
  if (!check.ok) throw new Error(`${check.problem}; no credentials were issued`);
  const password = opts.password ?? generatePassword();
  const e = newEntry(root, password, opts.now ?? new Date(), opts.bcryptCost);
  const replaced = store.devices.some((d) => d.username === root);
  const devices = [...store.devices.filter((d) => d.username !== root), e].sort((a, b) =>
    a.username < b.username ? -1 : a.username > b.username ? 1 : 0,
  );
  return { store: { ...store, devices }, username: root, password, replaced };
}

export function issueService(
  store: CredentialStore,
  service: Service,
  opts: { password?: string; now?: Date; bcryptCost?: number } = {},
): Issued {
  const password = opts.password ?? generatePassword();
  const username = SERVICES[service];
  const replaced = store.services[service] !== undefined;
  const e = newEntry(username, password, opts.now ?? new Date(), opts.bcryptCost);
  return { store: { ...store, services: { ...store.services, [service]: e } }, username, password, replaced };
}

export function revokeDevice(
  store: CredentialStore,
  root: string,
): { store: CredentialStore; found: boolean } {
  const devices = store.devices.filter((d) => d.username !== root);
  return { store: { ...store, devices }, found: devices.length !== store.devices.length };
}

const q = (s: string) => JSON.stringify(s);
const list = (xs: readonly string[]) => `[${xs.map(q).join(', ')}]`;

/**
 * The `authorization` block of nats-server (included by infra/nats/nats-server.conf.template).
 * A device may publish its uplinks and subscribe to its control and receipt topics, nothing else;
 * `$MQTT.sub.>` is where the MQTT listener delivers QoS 1 subscriptions (an internal subject no
 * MQTT client can subscribe to). The bridge reads every device's uplinks and writes controls and
 * receipts; the cloud roles connect as ordinary NATS clients with full access.
 */
export function renderNatsAuth(store: CredentialStore, certs: readonly CertUser[] = []): string {
  const lines = [
    '# Generated by `sluice devices credentials|certs`; edit the credential store or the CA, not this file.',
    'authorization {',
    '  users = [',
    // nats-server treats an empty user list as no authorization at all (anonymous clients in):
    // this user, whose password nobody knows and who may do nothing, keeps it closed.
    `    { user: "sluice-nobody", password: ${q(natsPasswordHash(generatePassword(), 4))},`,
    '      permissions: { publish: { deny: ">" }, subscribe: { deny: ">" } } }',
  ];
  const cloud = store.services.cloud;
  if (cloud)
    lines.push(
      `    { user: ${q(cloud.username)}, password: ${q(cloud.nats_password)}, allowed_connection_types: ["STANDARD"],`,
      '      permissions: { publish: ">", subscribe: ">" } }',
    );
  const bridge = store.services.bridge;
  if (bridge) lines.push(...bridgeUser(`password: ${q(bridge.nats_password)}`, bridge.username));
  for (const d of store.devices) {
    if (!checkDeviceRoot(d.username).ok) continue; // never grant a name that could widen a permission
    lines.push(...deviceUser(d.username, `password: ${q(d.nats_password)}`, d.username));
  }
  // A certificate is a user named by its subject (verify_and_map), with its identity's permissions.
  for (const c of certs) {
    if (c.identity === BRIDGE_USER) lines.push(...bridgeUser('', c.nats_user));
    else if (checkDeviceRoot(c.identity).ok) lines.push(...deviceUser(c.identity, '', c.nats_user));
  }
  lines.push('  ]', '}', '');
  return lines.join('\n');
}

/** What a certificate contributes to the broker files (see infra/security/ca.ts). */
export type CertUser = Readonly<{ identity: string; nats_user: string }>;

const bridgeUser = (secret: string, user: string) => [
  `    { user: ${q(user)}, ${secret ? `${secret}, ` : ''}allowed_connection_types: ["MQTT"],`,
  '      permissions: {',
  `        publish: { allow: ${list(DEVICE_SUBSCRIBE.map((t) => natsSubjectOf(`*/*/${t}`)))} }`,
  `        subscribe: { allow: ${list([...DEVICE_PUBLISH.map((t) => natsSubjectOf(`*/*/${t}`)), '$MQTT.sub.>'])} }`,
  '      } }',
];

const deviceUser = (root: string, secret: string, user: string) => [
  `    { user: ${q(user)}, ${secret ? `${secret}, ` : ''}allowed_connection_types: ["MQTT"],`,
  '      permissions: {',
  `        publish: { allow: ${list(DEVICE_PUBLISH.map((t) => natsSubjectOf(`${root}/${t}`)))} }`,
  `        subscribe: { allow: ${list([...DEVICE_SUBSCRIBE.map((t) => natsSubjectOf(`${root}/${t}`)), '$MQTT.sub.>'])} }`,
  '      } }',
];

/** Mosquitto's password_file; the topic rules live in the shipped infra/mosquitto/acl.conf. */
export function renderMosquittoPasswd(store: CredentialStore): string {
  const users = [store.services.bridge, ...store.devices].filter(
    (e): e is CredentialEntry =>
      e !== undefined && (e.username === BRIDGE_USER || checkDeviceRoot(e.username).ok),
  );
  return users.map((e) => `${e.username}:${e.mosquitto_password}\n`).join('');
}

export const RENDERED = { natsAuth: 'auth.conf', mosquittoPasswd: 'mosquitto.passwd' } as const;

/** Write the broker files next to each other in `dir` (owner-readable only). */
export function renderInto(store: CredentialStore, dir: string, certs: readonly CertUser[] = []): string[] {
  const nats = join(dir, RENDERED.natsAuth);
  const mosq = join(dir, RENDERED.mosquittoPasswd);
  writePrivate(nats, renderNatsAuth(store, certs));
  writePrivate(mosq, renderMosquittoPasswd(store));
  return [nats, mosq];
}

/** `{{NAME}}` placeholders of the shipped broker config templates; a missing value is an error. */
export function fillTemplate(text: string, values: Readonly<Record<string, string | number>>): string {
  return text.replace(/\{\{([A-Z_]+)\}\}/g, (_m, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`template needs a value for {{${name}}}`);
    return String(v);
  });
}

export const TEMPLATES = {
  nats: join(__dirname, '..', 'nats', 'nats-server.conf.template'),
  mosquitto: join(__dirname, '..', 'mosquitto', 'mosquitto.conf.template'),
  mosquittoAcl: join(__dirname, '..', 'mosquitto', 'acl.conf'),
  /** The same brokers with TLS everywhere and certificate identities (docs/security.md, "TLS"). */
  natsTls: join(__dirname, '..', 'nats', 'nats-server-tls.conf.template'),
  mosquittoTls: join(__dirname, '..', 'mosquitto', 'mosquitto-tls.conf.template'),
} as const;
