// Every word the app shows comes from a message catalog (web/app/locales/<language>.js), looked
// up by key with t(). The language is the first of the browser's languages that has a catalog,
// else English, unless the person picked one with the switcher in the header (kept in
// localStorage, which holds nothing else: the token stays in sessionStorage). Dates and numbers
// go through Intl in the same language. docs/web.md says how to add a string or a language.

import en from '../locales/en.js';
import de from '../locales/de.js';

/** The catalogs, by language. web/tests/i18n-check.mjs checks they have the same keys. */
export const CATALOGS = { en, de };

/** Each language in its own words, for the switcher. */
export const LANGUAGE_NAMES = { en: 'English', de: 'Deutsch' }; // i18n-ok: names in their own language

const DEFAULT = 'en';
const STORE_KEY = 'hush.locale';

function browserLanguages() {
  const list = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
  return list.filter(Boolean);
}

const base = (tag) => String(tag).toLowerCase().split('-')[0];

/** The first of `preferred` (BCP 47 tags, most wanted first) that has a catalog, else English. */
export function negotiate(preferred) {
  for (const tag of preferred || []) {
    if (Object.hasOwn(CATALOGS, base(tag))) return base(tag);
  }
  return DEFAULT;
}

function picked() {
  try {
    const v = localStorage.getItem(STORE_KEY);
    return v && Object.hasOwn(CATALOGS, v) ? v : null;
  } catch {
    return null;
  }
}

let current = picked() || negotiate(browserLanguages());
const listeners = [];

/**
 * The tag Intl formats with: the browser's own tag when it is in the same language (en-GB
 * gets day-first dates), else the bare language.
 */
function intlTag() {
  return browserLanguages().find((tag) => base(tag) === current) || current;
}

/** The language shown (`en`, `de`). */
export function locale() {
  return current;
}

/** Switches the language (from the switcher): remembered, `<html lang>` set, screens redrawn. */
export function setLocale(lang) {
  if (!Object.hasOwn(CATALOGS, lang)) return;
  try {
    localStorage.setItem(STORE_KEY, lang);
  } catch {
    // A browser that keeps nothing still switches for this page.
  }
  if (lang === current) return;
  current = lang;
  document.documentElement.lang = current;
  for (const fn of listeners) fn(current);
}

/** Calls `fn` after each switch of language. */
export function onLocaleChange(fn) {
  listeners.push(fn);
}

/** A number in the shown language (1,000 / 1.000). */
export function formatNumber(n, options) {
  return new Intl.NumberFormat(intlTag(), options).format(Number(n || 0));
}

/**
 * A date and time in the shown language, or the raw value when it does not parse. Numbers are
 * Unix seconds (or milliseconds, when that large).
 */
export function formatDate(value) {
  if (!value) return '';
  const d = new Date(typeof value === 'number' ? value * (value < 1e12 ? 1000 : 1) : value);
  if (Number.isNaN(d.getTime())) return String(value);
  return new Intl.DateTimeFormat(intlTag(), { dateStyle: 'medium', timeStyle: 'short' }).format(d);
}

/**
 * The message `key` in the shown language, with `{name}` replaced by `params.name` (numbers
 * formatted for the language). A message may be plural forms, `{ one: …, other: … }`, picked
 * by `params.count` through Intl.PluralRules. An unknown key shows itself, so a missing string
 * is visible (and web/tests/i18n-check.mjs fails on it first).
 */
export function t(key, params = {}) {
  let msg = CATALOGS[current][key];
  if (msg === undefined) msg = CATALOGS[DEFAULT][key];
  if (msg === undefined) return key;
  if (typeof msg === 'object') {
    const form = new Intl.PluralRules(intlTag()).select(Number(params.count));
    msg = msg[form] ?? msg.other;
  }
  return msg.replace(/\{(\w+)\}/g, (whole, name) => {
    if (!Object.hasOwn(params, name)) return whole;
    const v = params[name];
    return typeof v === 'number' ? formatNumber(v) : String(v);
  });
}

/**
 * Translates the page's fixed markup (index.html): `data-i18n` sets the text,
 * `data-i18n-aria-label` the aria-label.
 */
export function translateStatic(root = document) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-aria-label]')) {
    el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
  }
}
