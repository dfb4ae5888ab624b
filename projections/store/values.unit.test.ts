import { BoundedBuffer } from '../runner/buffer';
import { normalizeInteger, toWireValue } from './values';

describe('wire values', () => {
  it('reads database values back in their wire form', () => {
    expect(toWireValue(null)).toBeNull();
    expect(toWireValue(42n)).toBe(42);
    expect(toWireValue(9007199254740993n)).toEqual({ $int: '9007199254740993' });
    expect(toWireValue(-9223372036854775808n)).toEqual({ $int: '-9223372036854775808' });
    expect(toWireValue(Buffer.from([0, 255]))).toEqual({ $blob: 'AP8=' });
    expect(toWireValue('x')).toBe('x');
    expect(toWireValue(1.5)).toBe(1.5);
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
