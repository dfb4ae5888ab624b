import { sparkline } from './sparkline';

describe('sparkline', () => {
  it('maps the smallest value to ▁, the largest to █, and keeps gaps', () => {
    expect(sparkline([1, 2, 3, 4, 5, 6, 7, 8])).toBe('▁▂▃▄▅▆▇█');
    expect(sparkline([10, null, 0, 5])).toBe('█ ▁▅');
  });
  it('draws a flat line for equal values and blanks when nothing is known', () => {
    expect(sparkline([3, 3, 3])).toBe('▄▄▄');
    expect(sparkline([null, null])).toBe('  ');
    expect(sparkline([])).toBe('');
  });
});
