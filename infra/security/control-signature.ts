import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { canonicalJson } from '../../domain/shared/canonical';

/**
 * Control signatures (SPEC §2): base64 Ed25519 over the UTF-8 bytes of
 * canonicalJson(control without its `signature` field). Every field the cloud sent is covered,
 * including fields this agent does not know, so the agent verifies the object as received.
 */
export function controlSigningBytes(control: Readonly<Record<string, unknown>>): Buffer {
  const { signature: _signature, ...rest } = control;
  return Buffer.from(canonicalJson(rest), 'utf8');
}

export type KeyInput = KeyObject | string;

const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function rawKeyBytes(text: string): Buffer | undefined {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(t)) {
    const b = Buffer.from(t.replaceAll('-', '+').replaceAll('_', '/'), 'base64');
    return b.length === 32 ? b : undefined;
  }
  return undefined;
}

/** An Ed25519 public key from a KeyObject, PEM (SPKI), or the raw 32 bytes in hex or base64. */
export function toPublicKey(key: KeyInput): KeyObject {
  if (typeof key !== 'string') return key.type === 'private' ? createPublicKey(key) : key;
  const raw = rawKeyBytes(key);
  const k = raw
    ? createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' })
    : createPublicKey(key);
  if (k.asymmetricKeyType !== 'ed25519')
    throw new Error(`expected an Ed25519 key, got ${k.asymmetricKeyType}`);
  return k;
}

/** An Ed25519 private key from a KeyObject, PEM (PKCS#8), or the raw 32-byte seed in hex or base64. */
export function toPrivateKey(key: KeyInput): KeyObject {
  if (typeof key !== 'string') return key;
  const raw = rawKeyBytes(key);
  const k = raw
    ? createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' })
    : createPrivateKey(key);
  if (k.asymmetricKeyType !== 'ed25519')
    throw new Error(`expected an Ed25519 key, got ${k.asymmetricKeyType}`);
  return k;
}

/** The control with its `signature` set (any previous signature is replaced, not signed over). */
export function signControl<T extends Readonly<Record<string, unknown>>>(
  control: T,
  privateKey: KeyInput,
): T & { signature: string } {
  const signature = sign(null, controlSigningBytes(control), toPrivateKey(privateKey)).toString('base64');
  return { ...control, signature };
}

/** True only when `signature` is a valid Ed25519 signature of the rest of the control. */
export function verifyControl(control: Readonly<Record<string, unknown>>, publicKey: KeyInput): boolean {
  const sig = control.signature;
  if (typeof sig !== 'string' || sig.length === 0) return false;
  const bytes = Buffer.from(sig, 'base64');
  if (bytes.length !== 64) return false;
  try {
    return verify(null, controlSigningBytes(control), toPublicKey(publicKey), bytes);
  } catch {
    return false;
  }
}
