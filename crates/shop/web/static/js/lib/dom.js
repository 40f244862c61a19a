// Building DOM from data without ever parsing data as HTML: every text goes in as a
// text node, attributes are set one by one (no `on*` attributes), URLs are checked.

const URL_PROPS = new Set(['href', 'src']);

/** A URL safe to put in href/src: same-origin paths, http(s), data: images. */
export function safeUrl(url) {
  if (typeof url !== 'string') return null;
  const u = url.trim();
  if (u.startsWith('/') && !u.startsWith('//')) return u;
  if (u.startsWith('#') || u.startsWith('?')) return u;
  if (/^https?:\/\//i.test(u)) return u;
  if (/^data:image\/(png|gif|jpeg|webp);/i.test(u)) return u;
  return null;
}

/**
 * `h('button', {class: 'primary', type: 'submit', on: {click}}, 'text', child, ...)`.
 * Props: `class`, `text`, `on` (listeners), `data` (dataset), `aria` (aria-*), any
 * other name is set as an attribute (booleans add or omit it).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    else if (name === 'text') el.textContent = String(value);
    else if (name === 'on') for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (name === 'data') Object.assign(el.dataset, value);
    else if (name === 'aria') for (const [k, v] of Object.entries(value)) el.setAttribute(`aria-${k}`, String(v));
    else if (name === 'value') el.value = String(value);
    else if (name === 'checked' || name === 'selected') el[name] = Boolean(value);
    else if (/^on/i.test(name)) throw new Error(`event attributes are not allowed: ${name}`);
    else if (URL_PROPS.has(name)) {
      const url = safeUrl(value);
      if (url) el.setAttribute(name, url);
    } else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A labelled form field: `field('Name', h('input', {...}))`, the label tied by id. */
let seq = 0;
export function field(label, control, hint) {
  if (!control.id) control.id = `f${++seq}`;
  const hintEl = hint ? h('small', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintEl);
}

/** The values of a form's named controls, trimmed. */
export function formValues(form) {
  const out = {};
  for (const [k, v] of new FormData(form)) out[k] = typeof v === 'string' ? v.trim() : v;
  return out;
}

/** Disables a form's controls while `fn` runs. */
export async function busy(form, fn) {
  const controls = [...form.querySelectorAll('button, input, select, textarea')].filter((c) => !c.disabled);
  controls.forEach((c) => { c.disabled = true; });
  form.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } finally {
    controls.forEach((c) => { c.disabled = false; });
    form.removeAttribute('aria-busy');
  }
}
