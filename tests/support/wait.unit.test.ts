import { waitFor } from './wait';

describe('waitFor', () => {
  it('resolves with the first value the probe gives', async () => {
    let n = 0;
    await expect(waitFor(() => ++n >= 3 && n, { intervalMs: 1 })).resolves.toBe(3);
  });

  it('builds a message given as a function only at the timeout, from the state then', async () => {
    let state = 'before';
    let built = 0;
    const wait = waitFor(
      () => {
        state = 'during';
        return false;
      },
      {
        timeoutMs: 20,
        intervalMs: 5,
        message: () => {
          built++;
          return `the state (${state})`;
        },
      },
    );
    await expect(wait).rejects.toThrow('timed out after 20 ms waiting for the state (during)');
    expect(built).toBe(1);
  });

  it('still says what timed out when the message function throws', async () => {
    const wait = waitFor(() => undefined, {
      timeoutMs: 5,
      intervalMs: 1,
      message: () => {
        throw new Error('no output yet');
      },
    });
    await expect(wait).rejects.toThrow('condition (its message failed: no output yet)');
  });
});
