import { useEffect, useState } from 'preact/hooks';
import type { StepPage, StepView } from '../../../shared/schemas/wire.js';
import { api } from '../api.js';
import { ErrorNote, Loading } from '../components.js';
import { count, usd, when } from '../format.js';

const PAGE_SIZE = 100;
/** Longer content starts folded. */
const FOLDED_CHARS = 600;

const KIND_LABELS: Record<StepView['kind'], string> = {
  assistant: 'Assistant',
  tool_call: 'Tool call',
  tool_result: 'Tool result',
};

const Step = ({ runId, step }: { runId: string; step: StepView }) => {
  const [open, setOpen] = useState(false);
  const [full, setFull] = useState<string | undefined>();
  const [error, setError] = useState<unknown>();
  const [loading, setLoading] = useState(false);
  const text = full ?? step.content;
  const long = text.length > FOLDED_CHARS;
  const loadFull = async () => {
    setLoading(true);
    setError(undefined);
    try {
      setFull(await api.text(`/v1/runs/${runId}/steps/${step.seq}/content`));
      setOpen(true);
    } catch (err) {
      setError(err);
    } finally {
      setLoading(false);
    }
  };
  return (
    <li class={`step step-${step.kind}`} data-seq={step.seq}>
      <p class="step-head">
        <strong>{KIND_LABELS[step.kind]}</strong>
        {step.tool && <code>{step.tool}</code>}
        <span class="sub">
          #{step.seq} · {when(step.at)}
          {step.model && ` · ${step.model}`}
          {step.usage && ` · ${count(step.usage.inputTokens)} in / ${count(step.usage.outputTokens)} out`}
          {step.costMicroUsd !== undefined && ` · ${usd(step.costMicroUsd)}`}
        </span>
      </p>
      {step.argsPreview && <pre class="step-args">{step.argsPreview}</pre>}
      <pre class={long && !open ? 'step-content folded' : 'step-content'}>{text}</pre>
      <div class="step-tools">
        {long && (
          <button type="button" class="link" aria-expanded={open} onClick={() => setOpen(!open)}>
            {open ? 'Fold' : 'Show all'}
          </button>
        )}
        {step.truncated && full === undefined && (
          <button type="button" class="link" disabled={loading} onClick={loadFull}>
            {loading ? 'Loading…' : `Load the full text (${count(step.contentBytes ?? 0)} bytes)`}
          </button>
        )}
      </div>
      {error !== undefined && <ErrorNote error={error} />}
    </li>
  );
};

/** The run's steps in seq order, a page at a time, with the steps the stream brings once the last page is read. */
export const StepTimeline = ({ runId, live }: { runId: string; live: StepView[] }) => {
  const [steps, setSteps] = useState<StepView[] | undefined>();
  const [nextAfter, setNextAfter] = useState<number | null>(null);
  const [error, setError] = useState<unknown>();
  const [loading, setLoading] = useState(false);

  const load = async (after: number) => {
    setLoading(true);
    setError(undefined);
    try {
      const page = await api.get<StepPage>(`/v1/runs/${runId}/steps`, { after, limit: PAGE_SIZE });
      setSteps((list) => [...(after === 0 ? [] : (list ?? [])), ...page.items]);
      setNextAfter(page.nextAfter);
    } catch (err) {
      setError(err);
    } finally {
      setLoading(false);
    }
  };

  useEffect(() => {
    setSteps(undefined);
    void load(0);
  }, [runId]);

  const lastLoaded = steps?.at(-1)?.seq ?? 0;
  const shown =
    steps && nextAfter === null ? [...steps, ...live.filter((step) => step.seq > lastLoaded)] : (steps ?? []);

  return (
    <section aria-labelledby="steps-title" class="steps">
      <h2 id="steps-title">Steps</h2>
      {steps === undefined && !error && <Loading what="the steps" />}
      {steps !== undefined && shown.length === 0 && <p class="empty">No steps yet.</p>}
      <ol class="timeline">
        {shown.map((step) => (
          <Step key={step.seq} runId={runId} step={step} />
        ))}
      </ol>
      {error !== undefined && <ErrorNote error={error} retry={() => load(lastLoaded)} />}
      {nextAfter !== null && (
        <button type="button" class="load-more" disabled={loading} onClick={() => load(nextAfter)}>
          {loading ? 'Loading…' : 'Load more steps'}
        </button>
      )}
    </section>
  );
};
