import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { DISPATCH_SOURCES, RUN_MODES, type Run } from '../../../shared/domain/run.js';
import type { Pod, Project } from '../../../shared/schemas/wire.js';
import { api } from '../api.js';
import { ErrorNote, Show, useLoad } from '../components.js';
import { Link, type Place } from '../router.js';

/** A labelled control; the hint describes it without becoming part of its name. */
const Field = ({
  id,
  label,
  hint,
  children,
}: {
  id: string;
  label: string;
  hint?: string;
  children: ComponentChildren;
}) => (
  <div class="field">
    <label for={id}>{label}</label>
    {hint && (
      <span id={`${id}-hint`} class="sub">
        {hint}
      </span>
    )}
    {children}
  </div>
);

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
            <Field id="dispatch-project" label="Project">
              <select id="dispatch-project" name="projectId" required>
                {projects.map((project) => (
                  <option
                    key={project.projectId}
                    value={project.projectId}
                    selected={project.projectId === place.query.get('projectId')}
                  >
                    {project.name} ({project.projectId})
                  </option>
                ))}
              </select>
            </Field>
            <Field id="dispatch-item" label="Item" hint="The backlog item: letters, digits, _ . -">
              <input
                id="dispatch-item"
                name="itemId"
                required
                maxLength={128}
                pattern="[A-Za-z0-9][A-Za-z0-9_.\-]*"
                aria-describedby="dispatch-item-hint"
              />
            </Field>
            <Field id="dispatch-pod" label="Pod">
              <select id="dispatch-pod" name="podId" required>
                {pods.map((pod) => (
                  <option key={pod.podId} value={pod.podId} disabled={!pod.enabled}>
                    {pod.name} ({pod.podId}){pod.enabled ? '' : ' — disabled'}
                  </option>
                ))}
              </select>
            </Field>
            <fieldset>
              <legend>Mode</legend>
              {RUN_MODES.map((mode, i) => (
                <label key={mode} class="inline">
                  <input type="radio" name="mode" value={mode} defaultChecked={i === 0} /> {mode}
                </label>
              ))}
            </fieldset>
            <Field id="dispatch-prompt" label="Prompt">
              <textarea id="dispatch-prompt" name="prompt" required rows={5} />
            </Field>
            <Field
              id="dispatch-repos"
              label="Repositories"
              hint="Clone URLs, one a line; empty: the project's"
            >
              <textarea id="dispatch-repos" name="repos" rows={2} aria-describedby="dispatch-repos-hint" />
            </Field>
            <Field
              id="dispatch-ref"
              label="Ref"
              hint="A branch, tag or commit; empty: each repository's default branch"
            >
              <input id="dispatch-ref" name="ref" aria-describedby="dispatch-ref-hint" />
            </Field>
            <Field id="dispatch-source" label="Source">
              <select id="dispatch-source" name="source">
                {DISPATCH_SOURCES.map((source) => (
                  <option key={source} value={source} selected={source === 'manual'}>
                    {source}
                  </option>
                ))}
              </select>
            </Field>
            <Field id="dispatch-attribution" label="Attribution" hint="Who or what asked; empty: you">
              <input
                id="dispatch-attribution"
                name="attribution"
                maxLength={200}
                aria-describedby="dispatch-attribution-hint"
              />
            </Field>
            <Field
              id="dispatch-demo"
              label="Demo script"
              hint='JSON, for pods that run the demo agent, e.g. {"steps": 3, "logLines": 100}'
            >
              <textarea id="dispatch-demo" name="demo" rows={3} aria-describedby="dispatch-demo-hint" />
            </Field>
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
