// What the user is looking at, remembered across reloads.
//
// The tab runs in a same-origin iframe (/data/plugin_entry.html) that TensorBoard recreates on reload, so the
// iframe's own URL forgets everything. TensorBoard keeps its top-level hash (`#tb_xai`) across reloads and
// tolerates extra `&key=value` parts after the tab name, so the selection lives there; localStorage is the
// fallback when the parent is not reachable, and restores the last selection when the hash holds none.

export interface Selection {
  run: string; // the run explained by single-run cards, and the baseline (A) of a comparison
  runs: string; // the other runs compared with it, joined by RUN_SEPARATOR ('' for none)
  probeRun: string; // the compared run the probe explorer explains ('' for the baseline)
  method: string;
  input: string;
  target: string; // 'all' or a class index
  probe: number;
  probeOrder: string; // the probe menu's order: 'index', or 'change' (largest change of explanation first)
  signed: boolean;
  compare: string; // a second method for the probe explorer, '' for none
  k: number;
  rows: number; // heatmap rows shown, 0 for all
  overlay: string; // '<scalar run>|<tag>' drawn with the top-k lines, 'none', or 'auto' (the training loss)
  by: 'word' | 'position'; // what the evolution card ranks for a text input
}

export const DEFAULTS: Selection = {
  run: '',
  runs: '',
  probeRun: '',
  method: '',
  input: '',
  target: 'all',
  probe: 0,
  probeOrder: 'index',
  signed: false,
  compare: '',
  k: 5,
  rows: 30,
  overlay: 'auto',
  by: 'word',
};

/** Joins run names in `Selection.runs` (a character no directory name holds). */
export const RUN_SEPARATOR = '\n';

/** The runs a selection compares with its `run` (the baseline), in the order they were checked. */
export function otherRuns(selection: Selection): string[] {
  return selection.runs.split(RUN_SEPARATOR).filter((r) => r !== '' && r !== selection.run);
}

const STORAGE_KEY = 'tb_xai.selection';
const KEYS = Object.keys(DEFAULTS) as (keyof Selection)[];

function parentLocation(): Location | null {
  try {
    const location = window.parent.location;
    void location.hash; // throws when cross-origin
    return location;
  } catch {
    return null;
  }
}

export const MAX_K = 50;

/** The probe menu's orders: by index, or by how much each probe's explanation changed (largest first). */
export const PROBE_ORDERS: readonly string[] = ['index', 'change'];

/** k within [1, MAX_K] (and at most `features` when known). */
export function clampK(k: number, features?: number): number {
  const top = features && features > 0 ? Math.min(MAX_K, features) : MAX_K;
  return Math.min(top, Math.max(1, Math.round(Number.isFinite(k) ? k : DEFAULTS.k)));
}

function parse(raw: Record<string, string>): Partial<Selection> {
  const out: Partial<Selection> = {};
  for (const key of KEYS) {
    const value = raw[key];
    if (value === undefined) continue;
    const fallback = DEFAULTS[key];
    if (key === 'target') {
      // 'all' or a class index written in decimal digits (not -1, 1.5, 0x1 or 1e0)
      if (value === 'all' || /^\d+$/.test(value)) out.target = value;
    } else if (key === 'probeOrder') {
      if (PROBE_ORDERS.includes(value)) out.probeOrder = value;
    } else if (typeof fallback === 'number') {
      if (!/^\d+$/.test(value)) continue;
      const n = Number(value);
      if (!Number.isSafeInteger(n)) continue;
      (out as Record<string, unknown>)[key] = key === 'k' ? clampK(n) : n;
    } else if (typeof fallback === 'boolean') {
      (out as Record<string, unknown>)[key] = value === '1' || value === 'true';
    } else {
      (out as Record<string, unknown>)[key] = value;
    }
  }
  return out;
}

function decode(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null; // a malformed part written by someone else
  }
}

function hashParts(hash: string): string[] {
  return hash.replace(/^#/, '').split('&').filter((part) => part !== '');
}

function fromHash(hash: string): Record<string, string> {
  const raw: Record<string, string> = {};
  for (const part of hashParts(hash).slice(1)) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = decode(part.slice(0, eq));
    const value = decode(part.slice(eq + 1));
    if (key !== null && value !== null) raw[key] = value;
  }
  return raw;
}

function fromStorage(): Record<string, string> {
  try {
    const stored = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '{}');
    return stored && typeof stored === 'object' ? stored : {};
  } catch {
    return {};
  }
}

/** The remembered selection: the page's hash first, then localStorage, then defaults. */
export function loadSelection(): Selection {
  const location = parentLocation();
  const fromUrl = location ? parse(fromHash(location.hash)) : {};
  const stored = Object.keys(fromUrl).length ? {} : parse(fromStorage());
  return { ...DEFAULTS, ...stored, ...fromUrl };
}

/** Writes the selection into the page's hash (without a history entry) and localStorage. */
export function saveSelection(selection: Selection): void {
  const raw: Record<string, string> = {};
  for (const key of KEYS) {
    const value = selection[key];
    raw[key] = typeof value === 'boolean' ? (value ? '1' : '0') : String(value);
  }
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(raw));
  } catch {
    // storage disabled: the hash still remembers
  }
  const location = parentLocation();
  if (!location) return;
  const parts = hashParts(location.hash);
  const tab = parts[0] ?? '';
  const others = parts.slice(1).filter((part) => !KEYS.includes(decode(part.split('=')[0]) as keyof Selection));
  const ours = KEYS.map((key) => `${key}=${encodeURIComponent(raw[key])}`);
  const hash = '#' + [tab, ...others, ...ours].join('&');
  if (hash !== location.hash) {
    const url = new URL(location.href);
    url.hash = hash;
    window.parent.history.replaceState(window.parent.history.state, '', url.href);
  }
}
