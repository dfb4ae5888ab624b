import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { Client, Session } from './api';

/** The token lives for the browser tab only (sessionStorage), never in a URL or a cookie. */
const KEY = 'sluice.console.token';

export const storedToken = (): string | null => sessionStorage.getItem(KEY);
export const storeToken = (token: string): void => sessionStorage.setItem(KEY, token);
export const forgetToken = (): void => sessionStorage.removeItem(KEY);

export type SignedIn = Readonly<{ session: Session; client: Client; signOut: () => void }>;

export const SessionContext = createContext<SignedIn | null>(null);

export function useSignedIn(): SignedIn {
  const s = useContext(SessionContext);
  if (!s) throw new Error('useSignedIn outside a signed-in console');
  return s;
}

export const READ_ONLY_HINT =
  'This token is read-only (PROJECT_CAN_READ_DEVICES); an operator token (PROJECT_CAN_MANAGE_DEVICES) can do this.';
