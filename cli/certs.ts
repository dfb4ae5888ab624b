import type { Command } from 'commander';
import {
  CaError,
  type CertEntry,
  type IssuedCert,
  caPaths,
  ensureCa,
  generateCrl,
  issueCert,
  loadDb,
  renderBrokerFiles,
  revokeCerts,
  writeCertFiles,
} from '../infra/security/ca';
import { SERVICES, type Service, checkDeviceRoot, loadStore } from '../infra/security/credentials';
import { CliError, EXIT } from './client';
import { type Io, json } from './output';

/** The device root a command names ({topic_slug}/{device_name}), or a usage error saying why not;
 * `otherwise` ends the sentence naming what may be given instead. */
export function deviceRootArg(root: string | undefined, otherwise: string): string {
  if (!root) throw new CliError(EXIT.usage, `name the device root ({topic_slug}/{device_name})${otherwise}`);
  const check = checkDeviceRoot(root);
  if (!check.ok)
    throw new CliError(
      EXIT.usage,
      check.problem,
      'nothing was issued; pick a name of letters, digits, "_" and "-"',
    );
  return root;
}

export const DEFAULT_CA_DIR = 'infra/ca';
const DEFAULT_STORE = 'infra/credentials.json';

type CommonOpts = { caDir: string; store: string; out?: string; json?: boolean };
type IssueOpts = CommonOpts & {
  service?: string;
  server?: string;
  certOut: string;
  days?: string;
  notBefore?: string;
  notAfter?: string;
};

const statusOf = (c: CertEntry, now: Date) =>
  c.revoked_at
    ? 'revoked'
    : new Date(c.not_after) <= now
      ? 'expired'
      : new Date(c.not_before) > now
        ? 'not_yet_valid'
        : 'valid';

/** A file name for a certificate: `acme/gw-01` → `acme_gw-01`, `/solo` → `_solo`. */
const fileBase = (identity: string) => identity.replace(/\//g, '_');

function date(name: string, v: string | undefined): Date | undefined {
  if (v === undefined) return undefined;
  const d = new Date(v);
  if (Number.isNaN(d.getTime()))
    throw new CliError(
      EXIT.usage,
      `${name} ${JSON.stringify(v)} is not a date`,
      'give an ISO time like 2027-01-31T00:00:00Z',
    );
  return d;
}

/**
 * `sluice devices certs …`: a small CA (openssl) for device identities. A device certificate's
 * subject is its root topic; both brokers map it to the device's user, so the same ACLs hold as
 * for passwords (docs/security.md, "TLS and certificate identities").
 */
export function registerCertCommands(devices: Command, io: Io): void {
  const certs = devices
    .command('certs')
    .description('issue, revoke and list device certificates (a small CA driven through openssl)');
  const common = (c: Command) =>
    c
      .option(
        '--ca-dir <dir>',
        'the CA (created on first use; its key stays here, mode 0600)',
        DEFAULT_CA_DIR,
      )
      .option(
        '--store <file>',
        'credential store of the password users rendered beside the certificates',
        DEFAULT_STORE,
      )
      .option(
        '--out <dir>',
        'also write the broker files (auth.conf, mosquitto.passwd, ca.crt, crl.pem) here',
      )
      .option('--json', 'machine-readable output');

  const render = async (o: CommonOpts): Promise<string[]> =>
    o.out ? renderBrokerFiles(loadStore(o.store), o.caDir, o.out) : [];

  const run = async (f: () => Promise<void>) => {
    try {
      await f();
    } catch (err) {
      if (err instanceof CaError)
        throw new CliError(EXIT.unexpected, err.message, 'nothing was issued or revoked');
      throw err;
    }
  };

  common(
    certs
      .command('issue [root]')
      .description(
        'a certificate and key for a device (root = {topic_slug}/{device_name}), a service or a server',
      )
      .option('--service <name>', `a cloud service instead: ${Object.keys(SERVICES).join(' | ')}`)
      .option(
        '--server <names>',
        'a broker or API server instead: comma-separated host names and IP addresses',
      )
      .requiredOption('--cert-out <dir>', 'where the certificate, its key (0600) and ca.crt are written')
      .option('--days <n>', 'validity in days', '365')
      .option('--not-before <time>', 'explicit start of validity (ISO time)')
      .option('--not-after <time>', 'explicit end of validity (ISO time)'),
  ).action((root: string | undefined, o: IssueOpts) =>
    run(async () => {
      let issued: IssuedCert;
      const window = {
        ...(o.notBefore ? { notBefore: date('--not-before', o.notBefore)! } : {}),
        ...(o.notAfter ? { notAfter: date('--not-after', o.notAfter)! } : {}),
      };
      const days = Number(o.days ?? '365');
      if (!Number.isInteger(days) || days < 1)
        throw new CliError(EXIT.usage, `--days ${JSON.stringify(o.days)} is not a positive number of days`);
      if (o.service !== undefined) {
        if (!(o.service in SERVICES))
          throw new CliError(
            EXIT.usage,
            `unknown service ${JSON.stringify(o.service)}`,
            'use bridge or cloud',
          );
        issued = issueCert(o.caDir, { service: o.service as Service }, { days, ...window });
      } else if (o.server !== undefined) {
        issued = issueCert(
          o.caDir,
          { server: o.server.split(',').map((s) => s.trim()) },
          { days, ...window },
        );
      } else {
        issued = issueCert(
          o.caDir,
          { root: deviceRootArg(root, ', --service or --server') },
          { days, ...window },
        );
      }
      const base = o.server !== undefined ? 'server' : fileBase(issued.entry.identity);
      const files = writeCertFiles(o.certOut, issued, base);
      const written = await render(o);
      if (o.json) {
        await io.out(json({ ok: true, ...issued.entry, files, written }));
        return;
      }
      await io.out(
        `serial: ${issued.entry.serial}\nidentity: ${issued.entry.identity}\nnot_after: ${issued.entry.not_after}\n` +
          `certificate: ${files[0]}\nkey: ${files[1]}\nca: ${files[2]}\n`,
      );
      io.err(
        written.length
          ? `wrote ${written.join(', ')}; reload the broker to apply.\n`
          : 'broker files not written: run `sluice devices certs render --out DIR` and reload the broker.\n',
      );
    }),
  );

  common(
    certs
      .command('revoke [root]')
      .description('revoke every certificate of a device (or one, with --serial), and write a new CRL')
      .option('--serial <hex>', 'only this certificate (e.g. the old one after a rotation)'),
  ).action((root: string | undefined, o: CommonOpts & { serial?: string }) =>
    run(async () => {
      if (!root && !o.serial) throw new CliError(EXIT.usage, 'name the device root or --serial');
      const revoked = revokeCerts(o.caDir, o.serial ? { serial: o.serial } : { identity: root! });
      if (revoked.length === 0)
        throw new CliError(
          EXIT.notFound,
          `no unrevoked certificate ${o.serial ? `with serial ${o.serial}` : `of ${root}`} in ${o.caDir}`,
          'nothing was changed; see `sluice devices certs list`',
        );
      const written = await render(o);
      if (o.json) await io.out(json({ ok: true, revoked, written }));
      else await io.out(revoked.map((c) => `revoked ${c.serial}\t${c.identity}\n`).join(''));
      io.err(
        written.length
          ? `wrote ${written.join(', ')}; reload the broker to apply (Mosquitto: restart; docs/security.md).\n`
          : `new CRL at ${caPaths(o.caDir).crl}; render the broker files (--out) and reload the broker.\n`,
      );
    }),
  );

  common(
    certs.command('render').description('write the broker files from the CA and the credential store'),
  ).action((o: CommonOpts) =>
    run(async () => {
      if (!o.out) throw new CliError(EXIT.usage, '--out DIR is required');
      ensureCa(o.caDir);
      generateCrl(o.caDir); // a fresh CRL: the old one may be near its next-update time
      await io.out(`${(await render(o)).join('\n')}\n`);
    }),
  );

  common(certs.command('list').description('issued certificates: serial, identity, validity, status')).action(
    (o: CommonOpts) =>
      run(async () => {
        const now = new Date();
        const rows = loadDb(o.caDir).certs.map((c) => ({ ...c, status: statusOf(c, now) }));
        if (o.json) await io.out(json({ items: rows }));
        else
          await io.out(
            rows.map((r) => `${r.serial}\t${r.identity}\t${r.kind}\t${r.not_after}\t${r.status}\n`).join(''),
          );
      }),
  );
}
