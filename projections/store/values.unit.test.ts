import type { WireValue } from '../../domain/protocol/contracts';
import { storageClassOf } from '../../domain/protocol/wire-values';
import { BoundedBuffer } from '../runner/buffer';
import {
  decodeForStore,
  isMaterializationError,
  normalizeInteger,
  postgresToWire,
  sqliteToWire,
} from './values';

describe('wire values', () => {
  const classes: [WireValue, string][] = [
    [null, 'null'],
    [42, 'integer'],
    [{ $int: '9223372036854775807' }, 'integer'],
    [{ $int: '-9223372036854775808' }, 'integer'],
    [0.30000000000000004, 'real'],
    [{ $real: '5' }, 'real'],
    [{ $real: '9007199254740992' }, 'real'],
    [{ $real: '-0' }, 'real'],
    [{ $real: 'Infinity' }, 'real'],
    [{ $real: '-Infinity' }, 'real'],
    ['Infinity', 'text'],
    ['', 'text'],
    [{ $blob: 'AAEC/v8=' }, 'blob'],
    [{ $blob: '' }, 'blob'],
  ];

  it.each(classes)('decodes %j for SQLite and reads it back with its class', (v, cls) => {
    const stored = decodeForStore(v);
    const back = sqliteToWire(stored);
    expect(storageClassOf(back)).toBe(cls);
    expect(back).toEqual(v);
  });

  it('reads PostgreSQL values back by the column type', () => {
    expect(postgresToWire('INTEGER', 5)).toBe(5);
    expect(postgresToWire('INTEGER', 9007199254740993n)).toEqual({ $int: '9007199254740993' });
    expect(postgresToWire('REAL', 5)).toEqual({ $real: '5' });
    expect(postgresToWire('REAL', -0)).toEqual({ $real: '-0' });
    expect(postgresToWire('REAL', -Infinity)).toEqual({ $real: '-Infinity' });
    expect(postgresToWire('REAL', 1.5)).toBe(1.5);
    expect(postgresToWire('TEXT', 'Infinity')).toBe('Infinity');
    expect(postgresToWire('BLOB', { $real: '5' })).toEqual({ $real: '5' });
    expect(postgresToWire('NUMERIC', { $int: '12' })).toBe(12);
  });

  it('refuses what SQLite cannot hold exactly', () => {
    for (const v of [{ $int: '9223372036854775808' }, 1e20, { $blob: 'A' }] as WireValue[]) {
      let err: unknown;
      try {
        decodeForStore(v);
      } catch (e) {
        err = e;
      }
      expect(isMaterializationError(err)).toBe(true);
    }
  });

  it('turns only exact integers into numbers', () => {
    expect(normalizeInteger(9007199254740991n)).toBe(9007199254740991);
    expect(normalizeInteger(9007199254740992n)).toBe(9007199254740992n);
  });
});

describe('bounded buffer', () => {
  const item = (size: number) => ({ size });

  it('hands over batches bounded by count and bytes, at least one item', async () => {
    const buf = new BoundedBuffer<{ size: number }>(10);
    for (const s of [5, 5, 5, 50, 1]) await buf.push(item(s));
    expect((await buf.take(2, 100))!.map((x) => x.size)).toEqual([5, 5]);
    expect((await buf.take(10, 10))!.map((x) => x.size)).toEqual([5]);
    expect((await buf.take(10, 10))!.map((x) => x.size)).toEqual([50]);
    buf.close();
    expect((await buf.take(10, 10))!.map((x) => x.size)).toEqual([1]);
    expect(await buf.take(10, 10)).toBeNull();
  });

  it('makes a full buffer wait for the taker, and close releases everyone', async () => {
    const buf = new BoundedBuffer<{ size: number }>(1);
    await buf.push(item(1));
    let pushed = false;
    const second = buf.push(item(2)).then((ok) => {
      pushed = ok;
    });
    await Promise.resolve();
    expect(pushed).toBe(false);
    await buf.take(1, 10);
    await second;
    expect(pushed).toBe(true);
    const third = buf.push(item(3));
    buf.close();
    expect(await third).toBe(false);
  });
});
