import { generateKeyPairSync } from 'node:crypto';
import { type UploadClaims, mintUploadToken, uploadSecret, uploadUrl, verifyUploadToken } from './token';

const secret = Buffer.alloc(32, 1);
const claims: UploadClaims = {
  v: 1,
  device_key: 'acme/gw-1',
  lineage_id: 'l',
  source_table: 't',
  upload_id: 'u',
  journal_epoch: 'e',
  first_commit_seq: 1,
  last_commit_seq: 2,
  row_count: 2,
  expires_at: '2026-11-22T00:15:00.000Z',
};

describe('upload URL tokens', () => {
  it('verify until the expiry, and not from it on', () => {
    const t = mintUploadToken(claims, secret);
    expect(verifyUploadToken(t, secret, new Date('2026-11-22T00:14:59.999Z'))).toEqual({ ok: true, claims });
    expect(verifyUploadToken(t, secret, new Date('2026-11-22T00:15:00.000Z'))).toMatchObject({
      ok: false,
      code: 'upload_url_expired',
    });
  });

  it('refuse another secret, an altered payload, and garbage', () => {
    const t = mintUploadToken(claims, secret);
    const now = new Date('2026-11-22T00:00:00.000Z');
    expect(verifyUploadToken(t, Buffer.alloc(32, 2), now)).toMatchObject({ code: 'upload_url_invalid' });
    const [, mac] = t.split('.');
    const longer = Buffer.from(
      JSON.stringify({ ...claims, expires_at: '2099-01-01T00:00:00.000Z' }),
    ).toString('base64url');
    expect(verifyUploadToken(`${longer}.${mac}`, secret, now)).toMatchObject({ code: 'upload_url_invalid' });
    for (const bad of ['', 'x', 'a.b.c', `${t}x`]) {
      expect(verifyUploadToken(bad, secret, now)).toMatchObject({ ok: false, code: 'upload_url_invalid' });
    }
  });

  it('derive the same secret from the same signing key; refuse a short explicit one', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const a = uploadSecret({ signingKey: privateKey });
    expect(a).toEqual(uploadSecret({ signingKey: privateKey }));
    expect(a).not.toEqual(uploadSecret({ signingKey: generateKeyPairSync('ed25519').privateKey }));
    expect(uploadSecret({})).toBeUndefined();
    expect(() => uploadSecret({ secret: 'short' })).toThrow(/at least 32/);
    expect(uploadUrl('http://api:8080/', claims, secret)).toMatch(
      /^http:\/\/api:8080\/core\/api\/v1\/uploads\/u\?token=/,
    );
  });
});
