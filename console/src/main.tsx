import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { ConsoleConfig } from '../../shared/schemas/console.js';
import { connect, messageOf } from './api.js';
import { CALLBACK_PATH, completeCognitoSignIn, signInLocally, signOut, startCognitoSignIn } from './auth.js';
import { DispatchPage } from './pages/dispatch.js';
import { RunPage } from './pages/run.js';
import { RunsPage } from './pages/runs.js';
import { ItemPage, ListPage, PODS, PROJECTS } from './pages/settings.js';
import { SpendPage } from './pages/spend.js';
import { Link, navigate, type Place, useLocation } from './router.js';
import { forgetToken, type Session, storedSession } from './session.js';
import './styles.css';

const SIGN_IN_PATH = '/sign-in';

const here = () => `${location.pathname}${location.search}`;

const SignIn = ({ config, onSession }: { config: ConsoleConfig; onSession: (session: Session) => void }) => {
  const [error, setError] = useState<unknown>();
  const next = new URLSearchParams(location.search).get('next') ?? '/runs';
  const auth = config.auth;
  return (
    <main id="main" class="sign-in">
      <h1>Execution runs</h1>
      {auth.kind === 'cognito' ? (
        <button type="button" class="primary" onClick={() => startCognitoSignIn(auth, next)}>
          Sign in
        </button>
      ) : (
        <>
          <p>The local cloud's people: sign in as one of them.</p>
          <div class="actions column">
            {auth.users.map((user) => (
              <button
                key={user.id}
                type="button"
                class="primary"
                onClick={() =>
                  signInLocally(auth, user.id).then((session) => {
                    onSession(session);
                    navigate(next, { replace: true });
                  }, setError)
                }
              >
                Sign in as {user.label}
              </button>
            ))}
          </div>
        </>
      )}
      {error !== undefined && (
        <p class="error" role="alert">
          {messageOf(error)}
        </p>
      )}
    </main>
  );
};

/** The page for a path; undefined for none. */
const pageFor = (place: Place, session: Session) => {
  const path = place.path.replace(/\/+$/, '') || '/';
  const match = (pattern: RegExp) => pattern.exec(path)?.slice(1).map(decodeURIComponent);
  if (path === '/' || path === '/runs') return <RunsPage place={place} />;
  const runId = match(/^\/runs\/([^/]+)$/)?.[0];
  if (runId) return <RunPage runId={runId} session={session} />;
  const projectRuns = match(/^\/projects\/([^/]+)\/runs$/)?.[0];
  if (projectRuns) return <RunsPage key={projectRuns} place={place} projectId={projectRuns} />;
  if (path === '/dispatch') return <DispatchPage place={place} />;
  if (path === '/spend') return <SpendPage />;
  if (path === '/pods') return <ListPage kind={PODS} />;
  if (path === '/projects') return <ListPage kind={PROJECTS} />;
  const podId = match(/^\/pods\/([^/]+)$/)?.[0];
  if (podId) return <ItemPage key={podId} kind={PODS} id={podId} session={session} />;
  const projectId = match(/^\/projects\/([^/]+)$/)?.[0];
  if (projectId) return <ItemPage key={projectId} kind={PROJECTS} id={projectId} session={session} />;
  return undefined;
};

const NAV = [
  { href: '/runs', label: 'Runs' },
  { href: '/dispatch', label: 'Dispatch' },
  { href: '/spend', label: 'Spend' },
  { href: '/pods', label: 'Pods' },
  { href: '/projects', label: 'Projects' },
];

const App = ({ config }: { config: ConsoleConfig }) => {
  const place = useLocation();
  const [session, setSession] = useState<Session | undefined>(storedSession);
  const [callbackError, setCallbackError] = useState<unknown>();

  useEffect(() => {
    if (place.path !== CALLBACK_PATH || config.auth.kind !== 'cognito') return;
    completeCognitoSignIn(config.auth, place.query).then(({ session: signedIn, next }) => {
      setSession(signedIn);
      navigate(next, { replace: true });
    }, setCallbackError);
  }, [place.path, place.query, config.auth]);

  useEffect(() => {
    if (!session && place.path !== SIGN_IN_PATH && place.path !== CALLBACK_PATH) {
      navigate(`${SIGN_IN_PATH}?next=${encodeURIComponent(here())}`, { replace: true });
    }
  }, [session, place.path]);

  if (callbackError !== undefined) {
    return (
      <main id="main" class="sign-in">
        <h1>Sign-in failed</h1>
        <p class="error" role="alert">
          {messageOf(callbackError)}
        </p>
        <Link href={SIGN_IN_PATH}>Sign in again</Link>
      </main>
    );
  }
  if (!session) return place.path === SIGN_IN_PATH ? <SignIn config={config} onSession={setSession} /> : null;
  if (place.path === SIGN_IN_PATH) {
    navigate('/runs', { replace: true });
    return null;
  }
  connect({
    apiUrl: config.apiUrl,
    token: session.token,
    onUnauthorized: () => {
      forgetToken();
      setSession(undefined);
    },
  });
  const page = pageFor(place, session);
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <nav aria-label="Console">
          <ul>
            {NAV.map((item) => (
              <li key={item.href}>
                <Link href={item.href} class={place.path.startsWith(item.href) ? 'current' : undefined}>
                  {item.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <p class="who">
          <span>{session.email ?? session.userId}</span>
          <button
            type="button"
            class="link"
            onClick={() => {
              signOut(config.auth);
              setSession(undefined);
            }}
          >
            Sign out
          </button>
        </p>
      </header>
      <main id="main">
        {page ?? (
          <section>
            <h1>Page not found</h1>
            <p class="empty">
              Nothing is at {place.path}. <Link href="/runs">See the runs</Link>.
            </p>
          </section>
        )}
      </main>
    </>
  );
};

const start = async () => {
  const root = document.getElementById('app') as HTMLElement;
  try {
    const response = await fetch('/config.json', { cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(<App config={(await response.json()) as ConsoleConfig} />, root);
  } catch (err) {
    root.textContent = `The console's configuration could not be read (${messageOf(err)}). Reload the page to try again.`;
  }
};

void start();
