import { generateKeyPairSync } from 'node:crypto';
import { canonicalJson } from '../../domain/shared/canonical';
import { controlSigningBytes, signControl, toPublicKey, verifyControl } from './signature';

const control = {
  control_id: '0190a000-0000-7000-8000-000000000001',
  control_kind: 'pause_lineage',
  source_table: 'device_state',
  server_watermark: 103,
  reason: 'backpressure: staged row cap exceeded',
  issued_at: '2026-04-28T09:00:00Z',
};

describe('control signatures', () => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');

  it('signs the canonical JSON of every field but the signature', () => {
    const signed = signControl(control, privateKey);
    expect(controlSigningBytes(signed).toString()).toBe(canonicalJson(control));
    expect(verifyControl(signed, publicKey)).toBe(true);
    // Key order on the wire does not matter; canonical form does.
    const reordered = Object.fromEntries(Object.entries(signed).reverse());
    expect(verifyControl(reordered, publicKey)).toBe(true);
  });

  it('rejects tampering, other keys, missing and garbage signatures', () => {
    const signed = signControl(control, privateKey);
    expect(verifyControl({ ...signed, server_watermark: 104 }, publicKey)).toBe(false);
    expect(verifyControl({ ...signed, extra: 1 }, publicKey)).toBe(false);
    expect(verifyControl(signed, generateKeyPairSync('ed25519').publicKey)).toBe(false);
    expect(verifyControl(control, publicKey)).toBe(false);
    expect(verifyControl({ ...control, signature: 'AAAA' }, publicKey)).toBe(false);
  });

  it('accepts the public key as PEM, raw hex or raw base64', () => {
    const signed = signControl(control, privateKey);
    const der = publicKey.export({ type: 'spki', format: 'der' });
    const raw = der.subarray(der.length - 32);
    for (const k of [
      publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      raw.toString('hex'),
      raw.toString('base64'),
    ]) {
      expect(verifyControl(signed, toPublicKey(k))).toBe(true);
    }
    expect(() =>
      toPublicKey(generateKeyPairSync('x25519').publicKey.export({ type: 'spki', format: 'pem' }).toString()),
    ).toThrow(/Ed25519/);
  });
});
