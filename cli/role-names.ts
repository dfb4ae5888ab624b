/** The cloud roles one `sluice` process can run; `sluice all` runs every one of them. */
export const ROLES = ['bridge', 'worker', 'projector', 'api'] as const;
export type Role = (typeof ROLES)[number];
