import { median, percentileOfSorted, percentiles, ratio, spread } from './stats';

describe('benchmark stats', () => {
  it('takes the median of odd and even counts without reordering the input', () => {
    const xs = [5, 1, 3];
    expect(median(xs)).toBe(3);
    expect(xs).toEqual([5, 1, 3]);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('spreads runs into median, min and max', () => {
    expect(spread([30, 10, 20])).toEqual({ median: 20, min: 10, max: 30, n: 3 });
    expect(spread([]).n).toBe(0);
  });

  it('uses nearest-rank percentiles', () => {
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentileOfSorted(hundred, 50)).toBe(50);
    expect(percentileOfSorted(hundred, 99)).toBe(99);
    expect(percentileOfSorted(hundred, 100)).toBe(100);
    expect(percentileOfSorted([7], 1)).toBe(7);
    // Ten values: p99 is the largest, p90 the ninth.
    const ten = [10, 20, 30, 40, 50, 60, 70, 80, 90, 1000];
    expect(percentileOfSorted(ten, 90)).toBe(90);
    expect(percentileOfSorted(ten, 99)).toBe(1000);
    expect(() => percentileOfSorted(ten, 0)).toThrow(RangeError);
  });

  it('sorts before taking percentiles', () => {
    expect(percentiles([3, 1, 2, 100])).toEqual({ p50: 2, p90: 100, p99: 100, max: 100, n: 4 });
    expect(percentiles([]).p50).toBeNaN();
  });

  it('gives ratios only when both sides are numbers', () => {
    expect(ratio(1, 3)).toBe(0.333);
    expect(ratio(5, 0)).toBeNaN();
    expect(ratio(undefined, 2)).toBeNaN();
    expect(ratio(NaN, 2)).toBeNaN();
  });
});
