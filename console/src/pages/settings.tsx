import { useState } from 'preact/hooks';
import type { Pod, Project } from '../../../shared/schemas/wire.js';
import { api } from '../api.js';
import { Empty, ErrorNote, Show, useLoad } from '../components.js';
import { when } from '../format.js';
import { Link } from '../router.js';
import type { Session } from '../session.js';

/** Pods and projects: a list, and each one's settings, which account admins edit as the API takes them. */

interface Kind<T> {
  title: string;
  path: string;
  idOf: (item: T) => string;
  nameOf: (item: T) => string;
  /** the fields of its PUT request, from the record */
  requestOf: (item: T) => Record<string, unknown>;
  summaryOf: (item: T) => string;
  /** a page of its runs */
  runsOf?: (id: string) => string;
}

const STORED_ONLY = ['accountId', 'podId', 'projectId', 'updatedAt', 'taskDefinitionArn'];
const requestOf = (item: object) =>
  Object.fromEntries(Object.entries(item).filter(([key]) => !STORED_ONLY.includes(key)));

export const PODS: Kind<Pod> = {
  title: 'Pods',
  path: '/pods',
  idOf: (pod) => pod.podId,
  nameOf: (pod) => pod.name,
  requestOf,
  summaryOf: (pod) =>
    `${pod.agent.kind}, ${pod.cpu} CPU, ${pod.memoryMiB} MiB${pod.enabled ? '' : ', disabled'}`,
};

export const PROJECTS: Kind<Project> = {
  title: 'Projects',
  path: '/projects',
  idOf: (project) => project.projectId,
  nameOf: (project) => project.name,
  requestOf,
  summaryOf: (project) => `${project.repos.length} repositories, ${project.members.length} members`,
  runsOf: (projectId) => `/projects/${projectId}/runs`,
};

export const ListPage = <T,>({ kind }: { kind: Kind<T> }) => {
  const items = useLoad(() => api.get<{ items: T[] }>(`/v1${kind.path}`), kind.path);
  return (
    <section>
      <h1>{kind.title}</h1>
      <Show loaded={items.loaded} what={kind.title.toLowerCase()} retry={items.reload}>
        {({ items: list }) =>
          list.length === 0 ? (
            <Empty>None yet.</Empty>
          ) : (
            <ul class="cards">
              {list.map((item) => (
                <li key={kind.idOf(item)}>
                  <Link href={`${kind.path}/${kind.idOf(item)}`}>{kind.nameOf(item)}</Link>{' '}
                  <span class="sub">
                    {kind.idOf(item)} · {kind.summaryOf(item)}
                  </span>
                  {kind.runsOf && (
                    <>
                      {' '}
                      · <Link href={kind.runsOf(kind.idOf(item))}>runs</Link>
                    </>
                  )}
                </li>
              ))}
            </ul>
          )
        }
      </Show>
    </section>
  );
};

export const ItemPage = <T extends { updatedAt: string }>({
  kind,
  id,
  session,
}: {
  kind: Kind<T>;
  id: string;
  session: Session;
}) => {
  const item = useLoad(() => api.get<T>(`/v1${kind.path}/${encodeURIComponent(id)}`), `${kind.path}/${id}`);
  const [draft, setDraft] = useState<string | undefined>();
  const [error, setError] = useState<unknown>();
  const [saved, setSaved] = useState(false);
  const editable = session.accountRole === 'admin';

  const save = async (event: SubmitEvent) => {
    event.preventDefault();
    setError(undefined);
    setSaved(false);
    let body: unknown;
    try {
      body = JSON.parse(draft ?? '');
    } catch {
      setError(new Error('The settings are not JSON.'));
      return;
    }
    try {
      item.set(await api.put<T>(`/v1${kind.path}/${encodeURIComponent(id)}`, body));
      setDraft(undefined);
      setSaved(true);
    } catch (err) {
      setError(err);
    }
  };

  return (
    <section>
      <p class="crumbs">
        <Link href={kind.path}>{kind.title}</Link>
      </p>
      <Show loaded={item.loaded} what={id} retry={item.reload}>
        {(value) => {
          const text = JSON.stringify(kind.requestOf(value), null, 2);
          return (
            <>
              <h1>{kind.nameOf(value)}</h1>
              <p class="sub">
                {id} · saved {when(value.updatedAt)}
              </p>
              {editable ? (
                <form class="form" onSubmit={save}>
                  <div class="field">
                    <label for="settings-json">Settings (JSON)</label>
                    <textarea
                      id="settings-json"
                      class="code"
                      rows={Math.min(30, text.split('\n').length + 1)}
                      value={draft ?? text}
                      onInput={(e) => setDraft(e.currentTarget.value)}
                    />
                  </div>
                  {error !== undefined && <ErrorNote error={error} />}
                  <button type="submit" class="primary" disabled={draft === undefined}>
                    Save
                  </button>
                  {saved && (
                    <p class="notice" role="status">
                      Saved.
                    </p>
                  )}
                </form>
              ) : (
                <pre class="code">{text}</pre>
              )}
            </>
          );
        }}
      </Show>
    </section>
  );
};
