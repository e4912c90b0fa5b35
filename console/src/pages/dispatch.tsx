import { useState } from 'preact/hooks';
import { DISPATCH_SOURCES, RUN_MODES, type Run } from '../../../shared/domain/run.js';
import type { Pod, Project } from '../../../shared/schemas/wire.js';
import { api } from '../api.js';
import { ErrorNote, Show, useLoad } from '../components.js';
import { Link, type Place } from '../router.js';

const lines = (text: string) =>
  text
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);

/** Every field of `POST /v1/projects/{projectId}/runs`. */
export const DispatchPage = ({ place }: { place: Place }) => {
  const choices = useLoad(
    () =>
      Promise.all([
        api.get<{ items: Project[] }>('/v1/projects'),
        api.get<{ items: Pod[] }>('/v1/pods'),
      ]).then(([projects, pods]) => ({ projects: projects.items, pods: pods.items })),
    'dispatch',
  );
  const [error, setError] = useState<unknown>();
  const [dispatched, setDispatched] = useState<Run | undefined>();
  const [sending, setSending] = useState(false);
  // one key per filled-in form: a second click, or a retry after a lost answer, dispatches once
  const [idempotencyKey, setIdempotencyKey] = useState(() => crypto.randomUUID());

  const submit = async (event: SubmitEvent) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    const text = (name: string) => String(form.get(name) ?? '').trim();
    setError(undefined);
    let demo: unknown;
    try {
      demo = text('demo') ? JSON.parse(text('demo')) : undefined;
    } catch {
      setError(new Error('The demo script is not JSON: write an object such as {"steps": 3}.'));
      return;
    }
    const request = {
      itemId: text('itemId'),
      podId: text('podId'),
      mode: text('mode'),
      prompt: text('prompt'),
      source: text('source'),
      ...(lines(text('repos')).length ? { repos: lines(text('repos')) } : {}),
      ...(text('ref') ? { ref: text('ref') } : {}),
      ...(text('attribution') ? { attribution: text('attribution') } : {}),
      ...(demo !== undefined ? { config: { demo } } : {}),
    };
    setSending(true);
    try {
      const run = await api.post<Run>(`/v1/projects/${encodeURIComponent(text('projectId'))}/runs`, request, {
        'idempotency-key': idempotencyKey,
      });
      setDispatched(run);
      setIdempotencyKey(crypto.randomUUID());
    } catch (err) {
      setError(err);
    } finally {
      setSending(false);
    }
  };

  return (
    <section>
      <h1>Dispatch a run</h1>
      <Show loaded={choices.loaded} what="projects and pods" retry={choices.reload}>
        {({ projects, pods }) => (
          <form class="form" onSubmit={submit}>
            <label>
              Project
              <select
                name="projectId"
                required
                defaultValue={place.query.get('projectId') ?? projects[0]?.projectId}
              >
                {projects.map((project) => (
                  <option key={project.projectId} value={project.projectId}>
                    {project.name} ({project.projectId})
                  </option>
                ))}
              </select>
            </label>
            <label>
              Item
              <input
                name="itemId"
                required
                maxLength={128}
                pattern="[A-Za-z0-9][A-Za-z0-9_.\-]*"
                placeholder="ITEM-1"
              />
            </label>
            <label>
              Pod
              <select name="podId" required>
                {pods.map((pod) => (
                  <option key={pod.podId} value={pod.podId} disabled={!pod.enabled}>
                    {pod.name} ({pod.podId}){pod.enabled ? '' : ' — disabled'}
                  </option>
                ))}
              </select>
            </label>
            <fieldset>
              <legend>Mode</legend>
              {RUN_MODES.map((mode, i) => (
                <label key={mode} class="inline">
                  <input type="radio" name="mode" value={mode} defaultChecked={i === 0} /> {mode}
                </label>
              ))}
            </fieldset>
            <label>
              Prompt
              <textarea name="prompt" required rows={5} />
            </label>
            <label>
              Repositories <span class="sub">(clone URLs, one a line; default: the project's)</span>
              <textarea name="repos" rows={2} />
            </label>
            <label>
              Ref <span class="sub">(branch, tag or commit; default: each repository's default branch)</span>
              <input name="ref" />
            </label>
            <label>
              Source
              <select name="source" defaultValue="manual">
                {DISPATCH_SOURCES.map((source) => (
                  <option key={source} value={source}>
                    {source}
                  </option>
                ))}
              </select>
            </label>
            <label>
              Attribution <span class="sub">(who or what asked; default: you)</span>
              <input name="attribution" maxLength={200} />
            </label>
            <label>
              Demo script <span class="sub">(JSON, for pods running the demo agent)</span>
              <textarea name="demo" rows={3} placeholder='{"steps": 3, "logLines": 100}' />
            </label>
            {error !== undefined && <ErrorNote error={error} />}
            <button type="submit" class="primary" disabled={sending}>
              {sending ? 'Dispatching…' : 'Dispatch'}
            </button>
            {dispatched && (
              <p class="notice" role="status">
                Dispatched <Link href={`/runs/${dispatched.runId}`}>{dispatched.runId}</Link> (
                {dispatched.itemId}).
              </p>
            )}
          </form>
        )}
      </Show>
    </section>
  );
};
