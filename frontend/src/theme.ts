// Light or dark, following TensorBoard: its page toggles `dark-mode` on its <body> (from the browser's
// prefers-color-scheme by default, or the user's choice in its settings). The tab's iframe is same-origin, so
// it reads that class and watches it; outside TensorBoard it follows prefers-color-scheme.

export interface Ink {
  dark: boolean;
  strong: string; // titles, markers
  text: string; // labels
  muted: string; // axis titles, notes
  rule: string; // reference and annotation rules
  border: string; // outlines of colour bars and bars
  grid: string; // grid lines
  card: string; // what charts are drawn on (and exported on)
  missing: readonly number[]; // RGB of a cell without a value
  cursor: string; // the keyboard cursor and focus
}

export const LIGHT: Ink = {
  dark: false, strong: '#212121', text: '#424242', muted: '#616161', rule: '#9e9e9e', border: '#bdbdbd', grid: '#eeeeee',
  card: '#ffffff', missing: [0xe0, 0xe0, 0xe0], cursor: '#f57c00',
};

export const DARK: Ink = {
  dark: true, strong: '#f5f5f5', text: '#e0e0e0', muted: '#bdbdbd', rule: '#9e9e9e', border: '#616161', grid: '#3a3a3a',
  card: '#303030', missing: [0x48, 0x48, 0x48], cursor: '#ff9800',
};

let current: Ink = LIGHT;

/** The colours to draw with now. */
export function ink(): Ink {
  return current;
}

function parentBody(): HTMLElement | null {
  try {
    return window.parent !== window ? window.parent.document.body : null;
  } catch {
    return null; // not same-origin: not inside TensorBoard
  }
}

function detect(): boolean {
  const body = parentBody();
  if (body) return body.classList.contains('dark-mode');
  return window.matchMedia?.('(prefers-color-scheme: dark)').matches ?? false;
}

/** Applies the current theme to the document and calls `onChange` whenever TensorBoard's theme changes. */
export function followTheme(onChange: () => void): void {
  const apply = () => {
    const dark = detect();
    if (dark === current.dark && document.body.dataset.theme) return false;
    current = dark ? DARK : LIGHT;
    document.body.dataset.theme = dark ? 'dark' : 'light';
    return true;
  };
  apply();
  const changed = () => apply() && onChange();
  const body = parentBody();
  if (body) new MutationObserver(changed).observe(body, { attributes: true, attributeFilter: ['class'] });
  window.matchMedia?.('(prefers-color-scheme: dark)').addEventListener('change', changed);
}
