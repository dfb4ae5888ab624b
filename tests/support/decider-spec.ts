import { fold } from '../../domain/shared/decider';
import { DomainError } from '../../domain/shared/errors';

type Decider<C, E, S> = {
  decide: (c: C, s: S) => readonly E[];
  evolve: (s: S, e: E) => S;
  initialState: () => S;
};

/** given(events).when(command).then(events) — decider tests that read like the rule they check. */
export function deciderSpec<C, E, S>(decider: Decider<C, E, S>) {
  return {
    given(events: readonly E[]) {
      const state = fold(decider, events);
      return {
        when(command: C) {
          const run = () => decider.decide(command, state);
          return {
            then(expected: readonly unknown[]) {
              expect(run()).toEqual(expected);
            },
            thenMatch(expected: readonly unknown[]) {
              const got = run();
              expect(got).toHaveLength(expected.length);
              expect(got).toMatchObject(expected);
            },
            thenThrows(code: string) {
              let caught: unknown;
              try {
                run();
              } catch (e) {
                caught = e;
              }
              expect(caught).toBeInstanceOf(DomainError);
              expect((caught as DomainError).code).toBe(code);
            },
            events: run,
          };
        },
      };
    },
  };
}
