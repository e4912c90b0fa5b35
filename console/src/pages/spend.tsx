import type { AccountSpend } from '../../../shared/schemas/wire.js';
import { api } from '../api.js';
import { Show, useLoad } from '../components.js';
import { usd, when } from '../format.js';

const WINDOWS = [
  { window: '24h', title: 'Last 24 hours' },
  { window: '30d', title: 'Last 30 days' },
] as const;

const Breakdown = ({ caption, rows }: { caption: string; rows: { id: string; totalMicroUsd: number }[] }) =>
  rows.length === 0 ? null : (
    <table>
      <caption>{caption}</caption>
      <tbody>
        {rows.map((row) => (
          <tr key={row.id}>
            <th scope="row">{row.id}</th>
            <td>{usd(row.totalMicroUsd)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );

/** The spend per day as bars, each with its day and amount for pointers and screen readers. */
const DailyChart = ({ days }: { days: AccountSpend['byDay'] }) => {
  const highest = Math.max(0, ...days.map((d) => d.totalMicroUsd));
  // an empty window draws no bars rather than dividing by zero
  const scale = Math.max(1, highest);
  const width = 100 / Math.max(1, days.length);
  const total = days.reduce((sum, d) => sum + d.totalMicroUsd, 0);
  return (
    <figure class="chart">
      <svg
        viewBox="0 0 100 40"
        preserveAspectRatio="none"
        role="img"
        aria-label={`Spend per day, ${days[0]?.day} to ${days.at(-1)?.day}: ${usd(total)} in all, at most ${usd(highest)} a day`}
      >
        {days.map((d, i) => {
          const height = (d.totalMicroUsd / scale) * 38;
          return (
            <rect key={d.day} x={i * width + width * 0.1} y={40 - height} width={width * 0.8} height={height}>
              <title>
                {d.day}: {usd(d.totalMicroUsd)}
              </title>
            </rect>
          );
        })}
      </svg>
      <figcaption class="sub">
        Per day (UTC), {days[0]?.day} to {days.at(-1)?.day}; highest {usd(highest)}
      </figcaption>
    </figure>
  );
};

const Window = ({ spend, title }: { spend: AccountSpend; title: string }) => {
  const share = spend.capMicroUsd > 0 ? Math.min(1, spend.totalMicroUsd / spend.capMicroUsd) : 0;
  return (
    <section class="spend" aria-label={title}>
      <h2>{title}</h2>
      <p class="figure">{usd(spend.totalMicroUsd)}</p>
      {spend.capMicroUsd > 0 ? (
        <>
          <meter min={0} max={1} value={share} high={0.8} aria-label={`${title}: share of the cap spent`} />
          <p class="sub">
            of a {usd(spend.capMicroUsd)} cap ({Math.round(share * 100)} %)
          </p>
        </>
      ) : (
        <p class="sub">No cap.</p>
      )}
      <p class="sub">
        {when(spend.from)} – {when(spend.to)}
      </p>
      {spend.window === '30d' && <DailyChart days={spend.byDay} />}
      <Breakdown
        caption="By project"
        rows={spend.byProject.map((p) => ({ id: p.projectId, totalMicroUsd: p.totalMicroUsd }))}
      />
      <Breakdown
        caption="By pod"
        rows={spend.byPod.map((p) => ({ id: p.podId, totalMicroUsd: p.totalMicroUsd }))}
      />
    </section>
  );
};

/** The account's spend over the trailing windows the caps apply to. */
export const SpendPage = () => {
  const spends = useLoad(
    () => Promise.all(WINDOWS.map((w) => api.get<AccountSpend>('/v1/account/spend', { window: w.window }))),
    'spend',
  );
  return (
    <section>
      <h1>Spend</h1>
      <Show loaded={spends.loaded} what="the spend" retry={spends.reload}>
        {(values) => (
          <div class="panels">
            {values.map((spend, i) => (
              <Window key={spend.window} spend={spend} title={WINDOWS[i]?.title ?? spend.window} />
            ))}
          </div>
        )}
      </Show>
    </section>
  );
};
