import { useEffect, useState } from 'preact/hooks';
import { type Session, fetchSession } from '../api';
import { ErrorNote } from '../components/ui';
import { storeToken, storedToken } from '../session';

/** A token form; a token kept from earlier in this tab signs in again without asking. */
export function SignIn({ onSignedIn }: { onSignedIn: (token: string, session: Session) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const attempt = async (t: string) => {
    setBusy(true);
    setError(null);
    try {
      const session = await fetchSession(t);
      storeToken(t);
      onSignedIn(t, session);
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };

  useEffect(() => {
    const kept = storedToken();
    if (kept) void attempt(kept);
  }, []);

  return (
    <main class="sign-in">
      <form
        class="card sign-in-card"
        aria-label="Sign in"
        onSubmit={(e) => {
          e.preventDefault();
          if (token.trim()) void attempt(token.trim());
        }}
      >
        <h1>
          <span class="logo" aria-hidden="true">
            ≋
          </span>{' '}
          Sluice console
        </h1>
        <p class="muted">
          Sign in with an API token. The console can do what the token may do: read-only tokens see everything
          of their project, operator tokens can also act.
        </p>
        <label for="token">API token</label>
        <input
          id="token"
          type="password"
          autoComplete="off"
          spellcheck={false}
          value={token}
          onInput={(e) => setToken(e.currentTarget.value)}
          placeholder="sluice-dev-token-0000"
        />
        <ErrorNote error={error} />
        <button class="btn btn-primary" type="submit" disabled={busy || !token.trim()}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        <p class="small muted">The token stays in this browser tab (sessionStorage) until you sign out.</p>
      </form>
    </main>
  );
}
