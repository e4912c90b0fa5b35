import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';

/** Client-side navigation over the History API: the URL holds the page and its filters, nothing reloads. */

const listeners = new Set<() => void>();
const notify = () => {
  for (const listener of listeners) listener();
};
addEventListener('popstate', notify);

export const navigate = (to: string, options: { replace?: boolean } = {}) => {
  if (options.replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  notify();
};

export interface Place {
  path: string;
  query: URLSearchParams;
}

const place = (): Place => ({ path: location.pathname, query: new URLSearchParams(location.search) });

export const useLocation = (): Place => {
  const [current, setCurrent] = useState(place);
  useEffect(() => {
    const update = () => setCurrent(place());
    listeners.add(update);
    return () => listeners.delete(update);
  }, []);
  return current;
};

/** An ordinary link (it opens in a new tab, can be copied) that navigates in place on a plain click. */
export const Link = (props: { href: string; class?: string; children: ComponentChildren }) => (
  <a
    href={props.href}
    class={props.class}
    onClick={(event) => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      navigate(props.href);
    }}
  >
    {props.children}
  </a>
);
