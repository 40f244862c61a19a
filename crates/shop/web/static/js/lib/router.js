// A hash router: `#/product/3?x=1`. Views are loaded on first use (dynamic import), so
// the first page fetches only what it shows. A view gets a context whose `cleanup`
// callbacks (pollers, timers) run when the user leaves it.

export function currentRoute() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  return { path: path || '/', params: new URLSearchParams(query) };
}

/** `#/path?params` for links. */
export function href(path, params) {
  const q = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== '')).toString() : '';
  return `#${path}${q ? `?${q}` : ''}`;
}

export function navigate(path, params) {
  const target = href(path, params);
  if (location.hash === target) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = target;
}

/**
 * Starts routing. `routes`: [[RegExp, () => import(...)], ...]; a view module exports
 * `render(ctx)`. `makeContext(base)` adds what the page shares (client, session, ...);
 * `guard()` false keeps every view away (the admin console before sign-in).
 */
export function startRouter({ routes, main, makeContext, notFound, guard = () => true }) {
  let cleanups = [];
  let generation = 0;
  async function show({ focus = true } = {}) {
    const mine = ++generation;
    cleanups.forEach((fn) => { try { fn(); } catch { /* a view's cleanup never stops routing */ } });
    cleanups = [];
    if (!guard()) return;
    const { path, params } = currentRoute();
    const found = routes.map(([re, load]) => [path.match(re), load]).find(([m]) => m);
    const ctx = makeContext({
      path,
      params,
      match: found ? found[0] : null,
      root: main,
      live: () => mine === generation,
      cleanup: (fn) => cleanups.push(fn),
    });
    main.setAttribute('aria-busy', 'true');
    try {
      if (!found) return notFound(ctx);
      const view = await found[1]();
      if (mine !== generation) return;
      await view.render(ctx);
    } catch (e) {
      if (mine === generation) ctx.fail(e);
    } finally {
      if (mine === generation) {
        main.removeAttribute('aria-busy');
        const heading = main.querySelector('h1');
        if (heading) heading.tabIndex = -1;
        if (focus) (heading || main).focus();
        document.dispatchEvent(new CustomEvent('view-ready', { detail: { path } }));
      }
    }
  }
  window.addEventListener('hashchange', () => show());
  return { show, refresh: () => show({ focus: false }) };
}

/**
 * Calls `fn` now and every `ms` while the view is shown and the tab is visible; never
 * two calls at once. Stops with the view.
 */
export function poll(ctx, ms, fn) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await fn();
      } catch { /* a failed poll is retried at the next tick */ }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  ctx.cleanup(() => {
    stopped = true;
    clearTimeout(timer);
  });
}
