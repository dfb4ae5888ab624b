import { createHmac, hkdfSync, type KeyObject, timingSafeEqual } from 'node:crypto';
import { canonicalJson } from '../../domain/shared/canonical';

/**
 * What an upload URL's token binds: the device (as its connection proved it), the lineage and
 * table, the upload and the journal range it was granted for, and when it stops working. The
 * upload endpoint checks it with the shared secret alone, without reading any state.
 */
export type UploadClaims = Readonly<{
  v: 1;
  device_key: string;
  lineage_id: string;
  source_table: string;
  upload_id: string;
  journal_epoch: string;
  first_commit_seq: number;
  last_commit_seq: number;
  row_count: number;
  expires_at: string;
}>;

export type TokenCheck =
  | Readonly<{ ok: true; claims: UploadClaims }>
  | Readonly<{ ok: false; code: 'upload_url_invalid' | 'upload_url_expired'; message: string }>;

const DOMAIN = 'sluice-upload-url-v1';
const MIN_SECRET_BYTES = 32;

const mac = (secret: Buffer, payload: string) =>
  createHmac('sha256', secret).update(`${DOMAIN}.${payload}`).digest();

export function mintUploadToken(claims: UploadClaims, secret: Buffer): string {
  const payload = Buffer.from(canonicalJson(claims), 'utf8').toString('base64url');
  return `${payload}.${mac(secret, payload).toString('base64url')}`;
}

export function verifyUploadToken(token: string, secret: Buffer, now: Date): TokenCheck {
  const invalid = (message: string): TokenCheck => ({ ok: false, code: 'upload_url_invalid', message });
  if (token.length > 4096) return invalid('the upload token is too long');
  const [payload, sig, ...rest] = token.split('.');
  if (!payload || !sig || rest.length > 0) return invalid('the upload token is malformed');
  const given = Buffer.from(sig, 'base64url');
  const wanted = mac(secret, payload);
  if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) {
    return invalid('the upload token does not verify: it was altered or minted with another secret');
  }
  let claims: UploadClaims;
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as UploadClaims;
  } catch {
    return invalid('the upload token payload is not JSON');
  }
  if (claims.v !== 1) return invalid('the upload token has an unknown version');
  const exp = Date.parse(claims.expires_at);
  if (Number.isNaN(exp)) return invalid('the upload token has no expiry');
  if (now.getTime() >= exp) {
    return {
      ok: false,
      code: 'upload_url_expired',
      message: `the upload URL expired at ${claims.expires_at}; the device asks for a new one`,
    };
  }
  return { ok: true, claims };
}

/**
 * The upload URL secret: SLUICE_UPLOAD_SECRET when set (at least 32 bytes), else derived from the
 * control signing key (HKDF), so a bridge and an API configured with the same signing key agree.
 */
export function uploadSecret(opts: { secret?: string; signingKey?: KeyObject }): Buffer | undefined {
  if (opts.secret !== undefined) {
    const b = Buffer.from(opts.secret, 'utf8');
    if (b.length < MIN_SECRET_BYTES) {
      throw new Error(
        `SLUICE_UPLOAD_SECRET is ${b.length} bytes; it must be at least ${MIN_SECRET_BYTES} (e.g. openssl rand -hex 32)`,
      );
    }
    return b;
  }
  if (!opts.signingKey) return undefined;
  const der = opts.signingKey.export({ format: 'der', type: 'pkcs8' });
  return Buffer.from(hkdfSync('sha256', der, Buffer.alloc(0), DOMAIN, 32));
}

/** Where a device PUTs an upload: the API's upload endpoint with the token as a query parameter. */
export function uploadUrl(base: string, claims: UploadClaims, secret: Buffer): string {
  const root = base.replace(/\/+$/, '');
  return `${root}/core/api/v1/uploads/${claims.upload_id}?token=${mintUploadToken(claims, secret)}`;
}
