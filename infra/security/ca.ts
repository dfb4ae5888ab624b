import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';
import {
  type CredentialStore,
  SERVICES,
  type Service,
  checkDeviceRoot,
  renderInto,
  writePrivate,
} from './credentials';

/**
 * A small certificate authority for device identities, driven through the `openssl` command-line
 * tool (`openssl req`, `openssl ca`), not hand-written ASN.1. A device certificate's subject is
 * `CN={root topic}` plus `serialNumber={certificate serial}`:
 *
 * - Mosquitto (`use_identity_as_username`) takes the CN as the username, so the ACL's `%u`
 *   patterns that hold for passwords hold for certificates;
 * - nats-server (`verify_and_map`) maps the whole subject to a user, so every certificate is its
 *   own NATS user with its device's permissions, and one certificate of a device can be revoked
 *   while the next one (a rotation) keeps working.
 *
 * `certs.json` in the CA directory lists what was issued (the broker files are rendered from it);
 * openssl's own database (`index.txt`) is what the CRL is generated from.
 */

export const CA_FILES = {
  key: 'ca.key',
  cert: 'ca.crt',
  crl: 'crl.pem',
  db: 'certs.json',
  config: 'openssl-ca.cnf',
} as const;

const entry = z.object({
  serial: z.string().regex(/^[0-9A-F]+$/),
  /** A device root (`acme/gw-01`) or a service user (`sluice-bridge`), or a server's first name. */
  identity: z.string().min(1),
  kind: z.enum(['device', 'service', 'server']),
  /** The subject as nats-server's verify_and_map spells it: the NATS user of this certificate. */
  nats_user: z.string(),
  not_before: z.string(),
  not_after: z.string(),
  sha256: z.string(),
  issued_at: z.string(),
  revoked_at: z.string().optional(),
});
export type CertEntry = z.infer<typeof entry>;
const dbSchema = z.object({ format_version: z.literal(1), certs: z.array(entry).default([]) });
export type CertDb = z.infer<typeof dbSchema>;

export class CaError extends Error {}

function openssl(args: readonly string[], cwd: string): string {
  try {
    return execFileSync('openssl', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; code?: string; message: string };
    if (e.code === 'ENOENT')
      throw new CaError('the openssl command is not installed (Debian: apt-get install openssl)');
    throw new CaError(
      `openssl ${args[0]} failed: ${(e.stderr ?? e.message).trim().split('\n').slice(-3).join(' | ')}`,
    );
  }
}

const caConfig = (
  crlDays: number,
) => `# Written by \`sluice devices certs\`; openssl ca's view of this directory.
[ ca ]
default_ca = sluice

[ sluice ]
dir = .
database = ./index.txt
new_certs_dir = ./issued
serial = ./serial
crlnumber = ./crlnumber
certificate = ./${CA_FILES.cert}
private_key = ./${CA_FILES.key}
default_md = sha256
default_days = 365
default_crl_days = ${crlDays}
policy = policy_device
unique_subject = no
copy_extensions = none
preserve = yes
string_mask = utf8only
utf8 = yes

[ policy_device ]
commonName = supplied
serialNumber = optional

[ device_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ crl_ext ]
authorityKeyIdentifier = keyid
`;

/** Days a generated CRL stays valid; regenerate (any `revoke`, or `certs crl`) before then. */
export const CRL_DAYS = 30;

export type CaPaths = Readonly<{ dir: string; key: string; cert: string; crl: string; db: string }>;

export function caPaths(dir: string): CaPaths {
  return {
    dir,
    key: join(dir, CA_FILES.key),
    cert: join(dir, CA_FILES.cert),
    crl: join(dir, CA_FILES.crl),
    db: join(dir, CA_FILES.db),
  };
}

/** Create the CA in `dir` unless it exists (key 0600, a self-signed certificate, an empty CRL). */
export function ensureCa(dir: string, opts: { name?: string; days?: number } = {}): CaPaths {
  const p = caPaths(dir);
  if (existsSync(p.key) && existsSync(p.cert)) return p;
  mkdirSync(join(dir, 'issued'), { recursive: true });
  chmodSync(dir, 0o700);
  writeFileSync(join(dir, CA_FILES.config), caConfig(CRL_DAYS));
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'index.txt.attr'), 'unique_subject = no\n');
  writeFileSync(join(dir, 'serial'), `${randomSerialStart()}\n`);
  writeFileSync(join(dir, 'crlnumber'), '1000\n');
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      CA_FILES.key,
      '-out',
      CA_FILES.cert,
      '-days',
      String(opts.days ?? 3650),
      '-subj',
      `/CN=${opts.name ?? 'Sluice device CA'}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE,pathlen:0',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  chmodSync(p.key, 0o600);
  saveDb(dir, { format_version: 1, certs: [] });
  generateCrl(dir);
  return p;
}

/** A random 64-bit start, so two CAs made the same day do not hand out the same serials. */
function randomSerialStart(): string {
  const hex = openssl(['rand', '-hex', '8'], '/').trim().toUpperCase();
  return `1${hex.slice(1)}`;
}

export function loadDb(dir: string): CertDb {
  const path = join(dir, CA_FILES.db);
  if (!existsSync(path)) return { format_version: 1, certs: [] };
  const parsed = dbSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
  if (!parsed.success)
    throw new CaError(
      `${path} is not a Sluice certificate list (${parsed.error.issues[0]?.message}); nothing was changed`,
    );
  return parsed.data;
}

function saveDb(dir: string, db: CertDb): void {
  writePrivate(join(dir, CA_FILES.db), `${JSON.stringify(db, null, 2)}\n`);
}

/**
 * The subject as nats-server 2.9 prints it for `verify_and_map` (Go's RDNSequence.String():
 * the last RDN first, `,` `+` `"` `\` `<` `>` `;` escaped). Issued names hold none of those.
 */
export function natsUserOf(cn: string, serial: string): string {
  const esc = (v: string) => v.replace(/([,+"\\<>;])/g, '\\$1').replace(/^([ #])/, '\\$1');
  return `SERIALNUMBER=${serial},CN=${esc(cn)}`;
}

export type IssueOptions = {
  /** Validity in days from now (default 365). */
  days?: number;
  /** An explicit window instead (e.g. to test refusals of certificates not yet or no longer valid). */
  notBefore?: Date;
  notAfter?: Date;
  now?: Date;
};

export type IssuedCert = Readonly<{ entry: CertEntry; certPem: string; keyPem: string; caPem: string }>;

/** A device certificate (CN = its root topic) or a cloud service's (CN = the service user). */
export function issueCert(
  dir: string,
  who: { root: string } | { service: Service } | { server: readonly string[] },
  opts: IssueOptions = {},
): IssuedCert {
  let cn: string;
  let kind: CertEntry['kind'];
  let ext = 'device_ext';
  let extra = '';
  if ('root' in who) {
    const check = checkDeviceRoot(who.root);
    if (!check.ok) throw new CaError(`${check.problem}; no certificate was issued`);
    cn = who.root;
    kind = 'device';
  } else if ('service' in who) {
    cn = SERVICES[who.service];
    kind = 'service';
  } else {
    const names = who.server;
    if (names.length === 0 || names.some((n) => !/^[A-Za-z0-9.:-]{1,253}$/.test(n)))
      throw new CaError('server names must be host names or IP addresses; no certificate was issued');
    cn = names[0]!;
    kind = 'server';
    ext = 'server_ext';
    const san = names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
    extra = `\n[ server_ext ]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\nsubjectAltName = ${san}\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n`;
  }
  const p = ensureCa(dir);
  const serial = readFileSync(join(dir, 'serial'), 'utf8').trim().toUpperCase();
  const work = join(dir, `.issue-${process.pid}-${serial}`);
  mkdirSync(work, { recursive: true, mode: 0o700 });
  try {
    writeFileSync(
      join(work, 'req.cnf'),
      [
        '[ req ]',
        'prompt = no',
        'utf8 = yes',
        'string_mask = utf8only',
        'distinguished_name = dn',
        '[ dn ]',
        `CN = ${cn}`,
        `serialNumber = ${serial}`,
        '',
      ].join('\n'),
    );
    openssl(
      ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', join(work, 'key.pem')],
      dir,
    );
    openssl(
      [
        'req',
        '-new',
        '-config',
        join(work, 'req.cnf'),
        '-key',
        join(work, 'key.pem'),
        '-out',
        join(work, 'req.csr'),
      ],
      dir,
    );
    const validity =
      opts.notBefore || opts.notAfter
        ? [
            '-startdate',
            asn1Time(opts.notBefore ?? opts.now ?? new Date()),
            '-enddate',
            asn1Time(opts.notAfter ?? new Date((opts.now ?? new Date()).getTime() + 365 * 86_400_000)),
          ]
        : ['-days', String(opts.days ?? 365)];
    if (extra) writeFileSync(join(work, 'ext.cnf'), extra);
    openssl(
      [
        'ca',
        '-config',
        CA_FILES.config,
        '-batch',
        '-notext',
        '-preserveDN',
        '-in',
        join(work, 'req.csr'),
        '-out',
        join(work, 'cert.pem'),
        ...(extra ? ['-extfile', join(work, 'ext.cnf'), '-extensions', ext] : ['-extensions', ext]),
        ...validity,
      ],
      dir,
    );
    const certPem = readFileSync(join(work, 'cert.pem'), 'utf8');
    const keyPem = readFileSync(join(work, 'key.pem'), 'utf8');
    const x = new X509Certificate(certPem);
    const e: CertEntry = {
      serial: x.serialNumber.toUpperCase(),
      identity: cn,
      kind,
      nats_user: natsUserOf(cn, x.serialNumber.toUpperCase()),
      not_before: new Date(x.validFrom).toISOString(),
      not_after: new Date(x.validTo).toISOString(),
      sha256: x.fingerprint256,
      issued_at: (opts.now ?? new Date()).toISOString(),
    };
    const db = loadDb(dir);
    saveDb(dir, { ...db, certs: [...db.certs, e] });
    return { entry: e, certPem, keyPem, caPem: readFileSync(p.cert, 'utf8') };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const asn1Time = (d: Date) => `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;

/**
 * Revoke one certificate (by serial) or every unrevoked certificate of an identity, and write a
 * new CRL. The brokers refuse it once they read the new files (docs/security.md, "Revocation").
 */
export function revokeCerts(
  dir: string,
  sel: { serial: string } | { identity: string },
  now: Date = new Date(),
): CertEntry[] {
  const db = loadDb(dir);
  const hit = db.certs.filter(
    (c) =>
      !c.revoked_at &&
      ('serial' in sel ? c.serial === sel.serial.toUpperCase() : c.identity === sel.identity),
  );
  for (const c of hit)
    openssl(['ca', '-config', CA_FILES.config, '-revoke', join('issued', `${c.serial}.pem`)], dir);
  const at = now.toISOString();
  const serials = new Set(hit.map((c) => c.serial));
  saveDb(dir, { ...db, certs: db.certs.map((c) => (serials.has(c.serial) ? { ...c, revoked_at: at } : c)) });
  generateCrl(dir);
  return hit.map((c) => ({ ...c, revoked_at: at }));
}

/** A fresh CRL from openssl's database (valid CRL_DAYS days). */
export function generateCrl(dir: string): string {
  openssl(['ca', '-config', CA_FILES.config, '-gencrl', '-crlexts', 'crl_ext', '-out', CA_FILES.crl], dir);
  return join(dir, CA_FILES.crl);
}

/** Certificates the brokers should accept by configuration: issued here, not revoked, not expired. */
export function liveCerts(db: CertDb, now: Date = new Date()): CertEntry[] {
  return db.certs.filter((c) => !c.revoked_at && new Date(c.not_after) > now);
}

/** Write a certificate and its key (0600) for a device or a service; the CA certificate beside them. */
export function writeCertFiles(out: string, issued: IssuedCert, base: string): string[] {
  mkdirSync(out, { recursive: true });
  const cert = join(out, `${base}.crt`);
  const key = join(out, `${base}.key`);
  const ca = join(out, 'ca.crt');
  writeFileSync(cert, issued.certPem);
  writePrivate(key, issued.keyPem);
  writeFileSync(ca, issued.caPem);
  keepOwner(out, [cert, key, ca]);
  return [cert, key, ca];
}

/**
 * Everything a broker reads, into its directory: `auth.conf` (NATS: password users and one user per
 * live certificate), `mosquitto.passwd`, and the CA's `ca.crt` and `crl.pem` (Mosquitto's
 * `cafile`/`crlfile`, NATS's `ca_file`). Reload the broker afterwards (docs/security.md).
 */
export function renderBrokerFiles(store: CredentialStore, caDir: string | undefined, out: string): string[] {
  const hasCa = caDir !== undefined && existsSync(join(caDir, CA_FILES.cert));
  const written = renderInto(store, out, hasCa ? liveCerts(loadDb(caDir)) : []);
  if (hasCa) {
    for (const f of [CA_FILES.cert, CA_FILES.crl]) {
      copyFileSync(join(caDir, f), join(out, `${f}.tmp-${process.pid}`));
      // renamed into place whole: a broker reloading at that moment reads the old or the new file
      renameSync(join(out, `${f}.tmp-${process.pid}`), join(out, f));
      written.push(join(out, f));
    }
  }
  keepOwner(out, written);
  return written;
}

/**
 * Files written into a broker directory belong to that directory's owner: run as root with a
 * directory owned by `mosquitto` (docs/security.md, "Mosquitto as root"), a render leaves
 * nothing the broker cannot read after it drops its privileges.
 */
export function keepOwner(dir: string, files: readonly string[]): void {
  if (process.getuid?.() !== 0) return;
  const { uid, gid } = statSync(dir);
  if (uid === 0) return;
  for (const f of files) chownSync(f, uid, gid);
}
