import 'uplot/dist/uPlot.min.css';
import './style.css';
import { render } from 'preact';
import { useState } from 'preact/hooks';
import { type Session, createClient } from './api';
import { SessionContext, type SignedIn, forgetToken } from './session';
import { Shell } from './views/shell';
import { SignIn } from './views/sign-in';

function App() {
  const [signedIn, setSignedIn] = useState<SignedIn | null>(null);
  const signIn = (token: string, session: Session) =>
    setSignedIn({
      session,
      client: createClient(token, session.project_id),
      signOut: () => {
        forgetToken();
        setSignedIn(null);
      },
    });
  if (!signedIn) return <SignIn onSignedIn={signIn} />;
  return (
    <SessionContext.Provider value={signedIn}>
      <Shell />
    </SessionContext.Provider>
  );
}

render(<App />, document.getElementById('app')!);
