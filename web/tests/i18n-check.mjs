// Checks the web app's message catalogs without a browser (flows.mjs runs it as its first test;
// `node web/tests/i18n-check.mjs` runs it alone, in about a second):
//
// - every catalog has exactly the English catalog's keys, each message the same {placeholders}
//   and, for plural messages, exactly the forms its language's Intl.PluralRules uses;
// - every key the code names (t('…') anywhere under web/app/js, data-i18n… in index.html)
//   exists, and every catalog key is used somewhere;
// - i18n.js negotiates, interpolates, picks plural forms, formats and switches as it says;
// - no script under web/app/js has a bare English literal left: a string with a capitalised
//   word or three words in a row is a finding, unless its line says `i18n-ok` (for text that is
//   not shown, or is a language's own name).
//
// Prints each finding and `i18n: N findings` last; exits non-zero on any.

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const APP = join(dirname(fileURLToPath(import.meta.url)), '..', 'app');
const findings = [];
const find = (msg) => findings.push(msg);

function files(dir, ext) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p, ext));
    else if (p.endsWith(ext)) out.push(p);
  }
  return out.sort();
}

// ------------------------------------------------------------------------------------------
// The catalogs

const catalogs = {};
for (const file of files(join(APP, 'locales'), '.js')) {
  const lang = file.split('/').pop().replace(/\.js$/, '');
  catalogs[lang] = (await import(pathToFileURL(file))).default;
}
const en = catalogs.en;
if (!en) {
  console.log('web/app/locales/en.js is missing');
  process.exit(1);
}

const forms = (msg) => (typeof msg === 'string' ? { other: msg } : msg);
const placeholders = (msg) => {
  const all = new Set();
  for (const text of Object.values(forms(msg))) for (const m of String(text).matchAll(/\{(\w+)\}/g)) all.add(m[1]);
  return [...all].sort().join(',');
};

for (const [lang, catalog] of Object.entries(catalogs)) {
  const rules = new Intl.PluralRules(lang);
  const needed = rules.resolvedOptions().pluralCategories;
  for (const key of Object.keys(catalog)) {
    if (!Object.hasOwn(en, key)) find(`${lang}: key ${key} is not in en`);
  }
  for (const [key, ref] of Object.entries(en)) {
    if (!Object.hasOwn(catalog, key)) {
      find(`${lang}: key ${key} is missing`);
      continue;
    }
    const msg = catalog[key];
    if (typeof msg !== 'string' && (typeof msg !== 'object' || msg === null)) {
      find(`${lang}: ${key} is neither a string nor plural forms`);
      continue;
    }
    if ((typeof msg === 'object') !== (typeof ref === 'object')) {
      find(`${lang}: ${key} is ${typeof msg === 'object' ? '' : 'not '}plural, unlike en`);
    }
    if (typeof msg === 'object') {
      for (const form of needed) if (!Object.hasOwn(msg, form)) find(`${lang}: ${key} lacks the plural form "${form}"`);
      for (const form of Object.keys(msg)) if (!needed.includes(form)) find(`${lang}: ${key} has a form "${form}" ${lang} does not use`);
    }
    if (placeholders(msg) !== placeholders(ref)) {
      find(`${lang}: ${key} has placeholders {${placeholders(msg)}}, en has {${placeholders(ref)}}`);
    }
    for (const text of Object.values(forms(msg))) {
      if (!String(text).trim() && String(ref).trim()) find(`${lang}: ${key} is empty`);
    }
  }
}

// ------------------------------------------------------------------------------------------
// Keys the code uses

/** The source without comments, keeping strings and line breaks (for line numbers). */
function stripComments(src) {
  let out = '';
  let i = 0;
  let quote = null;
  while (i < src.length) {
    const c = src[i];
    const next = src[i + 1];
    if (quote) {
      out += c;
      if (c === '\\') {
        out += next ?? '';
        i += 2;
        continue;
      }
      if (c === quote) quote = null;
      i += 1;
      continue;
    }
    if (c === '/' && next === '/') {
      while (i < src.length && src[i] !== '\n') i += 1;
      continue;
    }
    if (c === '/' && next === '*') {
      const end = src.indexOf('*/', i + 2);
      const stop = end < 0 ? src.length : end + 2;
      out += src.slice(i, stop).replace(/[^\n]/g, '');
      i = stop;
      continue;
    }
    if (c === '\'' || c === '"' || c === '`') quote = c;
    out += c;
    i += 1;
  }
  return out;
}

/** Each string literal of `src` (comments stripped) with its line; templates without ${…}. */
function literals(src) {
  const out = [];
  const re = /'((?:[^'\\\n]|\\.)*)'|"((?:[^"\\\n]|\\.)*)"|`((?:[^`\\]|\\.)*)`/g;
  for (const m of src.matchAll(re)) {
    const line = src.slice(0, m.index).split('\n').length;
    const text = (m[1] ?? m[2] ?? m[3].replace(/\$\{[^}]*\}/g, ' ')).replace(/\\(.)/g, '$1');
    out.push({ text, line, raw: m[0] });
  }
  return out;
}

const used = new Set();
const sources = files(join(APP, 'js'), '.js');
for (const file of sources) {
  const name = relative(join(APP, '..', '..'), file);
  const lines = readFileSync(file, 'utf8').split('\n');
  const src = stripComments(lines.join('\n'));
  // t('key') and t(`key`): keys are literal, so this list is complete. (i18n.js is t() itself.)
  const isI18n = file.endsWith('/i18n.js');
  for (const m of src.matchAll(/\bt\(\s*(['"`])([^'"`]*)\1/g)) {
    const key = m[2];
    const line = src.slice(0, m.index).split('\n').length;
    if (key.includes('${')) find(`${name}:${line}: t() with a computed key (${key}); name each key`);
    else if (!Object.hasOwn(en, key)) find(`${name}:${line}: key ${key} is not in the catalogs`);
    used.add(key);
  }
  if (!isI18n && /\bt\(\s*[^'"`\s)]/.test(src)) {
    for (const m of src.matchAll(/\bt\(\s*([^'"`\s)][^,)]*)/g)) {
      const line = src.slice(0, m.index).split('\n').length;
      find(`${name}:${line}: t() with a computed key (${m[1]}); name each key`);
    }
  }
  // Bare English: a capitalised word, or three words in a row, in a literal that is not a key.
  for (const lit of literals(src)) {
    if (Object.hasOwn(en, lit.text)) continue;
    if (/i18n-ok/.test(lines[lit.line - 1] || '')) continue;
    const prose = /\b[A-Z][a-z]+\b/.test(lit.text) || /\b[a-z]{2,} [a-z]{2,} [a-z]{2,}\b/.test(lit.text);
    if (prose) find(`${name}:${lit.line}: bare text ${lit.raw.slice(0, 70)}; put it in the catalogs and use t()`);
  }
}

const html = readFileSync(join(APP, 'index.html'), 'utf8');
for (const m of html.matchAll(/data-i18n(?:-aria-label)?="([^"]+)"/g)) {
  if (!Object.hasOwn(en, m[1])) find(`web/app/index.html: key ${m[1]} is not in the catalogs`);
  used.add(m[1]);
}
for (const key of Object.keys(en)) {
  if (!used.has(key)) find(`en: key ${key} is used nowhere; remove it`);
}

// ------------------------------------------------------------------------------------------
// The machinery (i18n.js), in Node with a browser that prefers Swiss German then English.

{
  const stored = new Map();
  globalThis.navigator = { languages: ['de-CH', 'en-US'], language: 'de-CH' };
  globalThis.localStorage = { getItem: (k) => stored.get(k) ?? null, setItem: (k, v) => stored.set(k, String(v)) };
  globalThis.document = { documentElement: { lang: 'en' } };
  const i18n = await import(pathToFileURL(join(APP, 'js', 'i18n.js')));
  const expect = (what, got, want) => {
    if (got !== want) find(`i18n.js: ${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  };
  expect('negotiated from de-CH, en-US', i18n.locale(), 'de');
  expect('nothing stored by negotiating', stored.size, 0);
  expect('negotiate fr-FR, de-AT', i18n.negotiate(['fr-FR', 'de-AT']), 'de');
  expect('negotiate fr-FR alone', i18n.negotiate(['fr-FR']), 'en');
  expect('negotiate nothing', i18n.negotiate([]), 'en');
  expect('one, in German', i18n.t('discover.count', { count: 1 }), '1 Gruppe');
  const swiss = new Intl.NumberFormat('de-CH');
  expect('other, numbers formatted', i18n.t('discover.count', { count: 1000 }), `${swiss.format(1000)} Gruppen`);
  expect('placeholders', i18n.t('group.left', { name: 'Book Circle' }), 'Sie haben Book Circle verlassen.');
  expect('an unknown key shows itself', i18n.t('no.such.key'), 'no.such.key');
  expect('a German date', i18n.formatDate('2026-12-06T12:30:00Z').startsWith('06.12.2026'), true);
  expect('a Swiss German number (the browser\'s own tag)', i18n.formatNumber(1234.5), swiss.format(1234.5));
  expect('not the German of Germany', swiss.format(1234.5) !== new Intl.NumberFormat('de-DE').format(1234.5), true);
  // Problem details: the app's words for what it knows, the service's English detail inside.
  const { ApiError } = await import(pathToFileURL(join(APP, 'js', 'api.js')));
  const notOwner = { type: 'urn:hush:problem:not-owner', detail: 'only the group’s owners may do this' };
  const invalid = { type: 'urn:hush:problem:invalid-input', detail: 'q: must be at most 200 characters' };
  const limited = { type: 'urn:hush:problem:rate-limited', detail: 'slow down' };
  expect('not-owner, in German', new ApiError(403, notOwner).message,
    'Das dürfen nur die Besitzer der Gruppe. Die Begründung des Dienstes (auf Englisch): „Only the group’s owners may do this.“');
  expect('another problem, in German', new ApiError(422, invalid).message,
    'Der Dienst hat die Anfrage abgelehnt. Seine Begründung (auf Englisch): „Q: must be at most 200 characters.“');
  expect('rate-limited, in German', new ApiError(429, limited, '1').message, 'Zu viele Versuche. Versuchen Sie es in 1 Sekunde erneut.');
  let heard = null;
  i18n.onLocaleChange((l) => { heard = l; });
  i18n.setLocale('xx');
  expect('an unknown language is ignored', i18n.locale(), 'de');
  i18n.setLocale('en');
  expect('switched', [i18n.locale(), heard, document.documentElement.lang, stored.get('hush.locale')].join(), 'en,en,en,en');
  expect('not-owner, in English: the service\'s sentence', new ApiError(403, notOwner).message, 'Only the group’s owners may do this.');
  expect('rate-limited, in English', new ApiError(429, limited, '30').message, 'Too many attempts. Try again in 30 seconds.');
  expect('one, in English', i18n.t('discover.count', { count: 1 }), '1 group');
  expect('other, in English', i18n.t('discover.count', { count: 2 }), '2 groups');
  expect('an English date (en-US, the browser\'s own tag)', i18n.formatDate('2026-12-06T12:30:00Z').startsWith('Dec 6, 2026'), true);
}

for (const f of findings) console.log(f);
console.log(`i18n: ${Object.keys(catalogs).join(', ')} with ${Object.keys(en).length} keys; ${findings.length} findings`);
process.exit(findings.length ? 1 : 0);
