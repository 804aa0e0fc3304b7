// Element construction that can only ever produce text: strings from event files (run, feature, class and
// method names) go through textContent or attribute values, never through HTML parsing.

type Attrs = Record<string, string | number | boolean | undefined>;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) node.append(child); // append() inserts strings as text nodes
  return node;
}

/** Replaces a <select>'s options; keeps `value` selected when present. */
export function setOptions(select: HTMLSelectElement, options: { value: string; label: string }[], value: string): void {
  select.replaceChildren(...options.map((o) => el('option', { value: o.value }, o.label)));
  select.value = options.some((o) => o.value === value) ? value : (options[0]?.value ?? '');
}

/** Formats an attribution or metric value compactly for tooltips and labels. */
export function formatValue(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return 'n/a';
  if (value === 0) return '0';
  const abs = Math.abs(value);
  return abs >= 1e4 || abs < 1e-3 ? value.toExponential(3) : value.toPrecision(4);
}

/** Cuts a long label for display; the full text stays in tooltips. */
export function shorten(text: string, max = 28): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The SVG namespace, for every <svg> the views create. */
export const SVG_NS = 'http://www.w3.org/2000/svg';

/** A new, empty <svg> element. */
export function svgElement(): SVGSVGElement {
  return document.createElementNS(SVG_NS, 'svg');
}
