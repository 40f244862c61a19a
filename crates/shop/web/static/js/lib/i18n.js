// Korean and English: the messages, won and date formatting, and the switch (kept in
// localStorage). Static text in the HTML carries `data-i18n="key"` (text),
// `data-i18n-placeholder` and `data-i18n-aria-label`.

import { MESSAGES } from './messages.js';

const KEY = 'shop.lang';
const LANGS = ['ko', 'en'];
let lang = initial();

function initial() {
  let saved = null;
  try {
    saved = localStorage.getItem(KEY);
  } catch { /* storage may be off */ }
  if (LANGS.includes(saved)) return saved;
  return 'ko';
}

export const getLang = () => lang;

export function setLang(next) {
  if (!LANGS.includes(next) || next === lang) return;
  lang = next;
  try {
    localStorage.setItem(KEY, next);
  } catch { /* the choice lasts for this page only */ }
  window.dispatchEvent(new CustomEvent('langchange', { detail: next }));
}

export function onLangChange(fn) {
  window.addEventListener('langchange', fn);
  window.addEventListener('storage', (e) => {
    if (e.key === KEY && LANGS.includes(e.newValue) && e.newValue !== lang) {
      lang = e.newValue;
      fn();
    }
  });
}

/** The message `key` with `{name}` placeholders filled; `fallback` when there is none. */
export function t(key, vars = {}, fallback) {
  let text = MESSAGES[lang][key];
  if (text === undefined) {
    if (fallback !== undefined) return fallback;
    console.warn(`i18n: no "${key}" in ${lang}`);
    return key;
  }
  for (const [k, v] of Object.entries(vars)) text = text.replaceAll(`{${k}}`, String(v));
  return text;
}

const wonKo = new Intl.NumberFormat('ko-KR');
const wonEn = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'KRW' });

/** 12,900원 in Korean, ₩12,900 in English. */
export function won(amount) {
  const n = Number(amount ?? 0);
  if (lang === 'ko') return `${wonKo.format(n)}원`;
  return wonEn.format(n);
}

export function number(n, digits = 0) {
  return new Intl.NumberFormat(lang === 'ko' ? 'ko-KR' : 'en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(n);
}

export function dateTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return new Intl.DateTimeFormat(lang === 'ko' ? 'ko-KR' : 'en-GB', { dateStyle: 'medium', timeStyle: 'short' }).format(d);
}

/** A failed request in words: the message of its code when known, else the server's. */
export function errorText(e) {
  if (!e || !e.code) return t('error.unknown');
  if (e.code === 'NETWORK') return t('err.NETWORK');
  const known = MESSAGES[lang][`err.${e.code}`];
  if (known && e.code === 'INVALID_REQUEST' && e.message) return `${known} (${e.message})`;
  if (known) return known;
  if (e.status === 404 && e.code === 'NOT_FOUND') return t('err.unsupported');
  return e.message || e.code;
}

export function applyI18n(root) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll('[data-i18n-aria-label]')) el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
}
