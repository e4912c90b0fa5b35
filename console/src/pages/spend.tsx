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
