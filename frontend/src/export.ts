// Export of a chart as SVG or PNG and of its data as CSV.
//
// A chart ("figure") is a positioned element whose drawn content is <svg> and <canvas> elements only (tooltips
// and controls are other elements and are left out). SVG export nests each <svg> and embeds each canvas as a
// PNG <image> at its place; PNG export paints the same pieces onto one canvas at twice the resolution.
// Exports are drawn as shown: on the dark card in dark mode, on white in light mode.

import { SVG_NS } from './dom';
import { ink } from './theme';
const FONT = 'Roboto, "Helvetica Neue", Arial, sans-serif';

interface Piece {
  node: SVGSVGElement | HTMLCanvasElement;
  x: number;
  y: number;
  width: number;
  height: number;
}

function pieces(figure: HTMLElement): Piece[] {
  const origin = figure.getBoundingClientRect();
  return Array.from(figure.querySelectorAll<SVGSVGElement | HTMLCanvasElement>('svg, canvas'))
    .filter((node) => !(node.parentElement?.closest('svg')) && !node.closest('[data-no-export]'))
    .map((node) => {
      const r = node.getBoundingClientRect();
      return { node, x: r.left - origin.left, y: r.top - origin.top, width: r.width, height: r.height };
    })
    .filter((p) => p.width > 0 && p.height > 0);
}

function serialize(svg: SVGSVGElement, width: number, height: number, x = 0, y = 0): SVGSVGElement {
  const copy = svg.cloneNode(true) as SVGSVGElement;
  copy.setAttribute('xmlns', SVG_NS);
  copy.setAttribute('x', String(x));
  copy.setAttribute('y', String(y));
  copy.setAttribute('width', String(width));
  copy.setAttribute('height', String(height));
  copy.setAttribute('font-family', FONT);
  copy.removeAttribute('style');
  copy.setAttribute('color', ink().text); // d3 axes draw in currentColor
  return copy;
}

/** A standalone SVG document of the figure. */
export function figureSvg(figure: HTMLElement): string {
  const { width, height } = figure.getBoundingClientRect();
  const root = document.createElementNS(SVG_NS, 'svg');
  root.setAttribute('xmlns', SVG_NS);
  root.setAttribute('width', String(Math.ceil(width)));
  root.setAttribute('height', String(Math.ceil(height)));
  root.setAttribute('viewBox', `0 0 ${Math.ceil(width)} ${Math.ceil(height)}`);
  root.setAttribute('font-family', FONT);
  const background = document.createElementNS(SVG_NS, 'rect');
  background.setAttribute('width', '100%');
  background.setAttribute('height', '100%');
  background.setAttribute('fill', ink().card);
  root.append(background);
  for (const p of pieces(figure)) {
    if (p.node instanceof HTMLCanvasElement) {
      const image = document.createElementNS(SVG_NS, 'image');
      image.setAttribute('href', p.node.toDataURL('image/png'));
      image.setAttribute('x', String(p.x));
      image.setAttribute('y', String(p.y));
      image.setAttribute('width', String(p.width));
      image.setAttribute('height', String(p.height));
      image.setAttribute('preserveAspectRatio', 'none');
      image.setAttribute('style', 'image-rendering: pixelated');
      root.append(image);
    } else {
      root.append(serialize(p.node, p.width, p.height, p.x, p.y));
    }
  }
  return new XMLSerializer().serializeToString(root);
}

function loadImage(url: string): Promise<HTMLImageElement> {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error('could not rasterize the chart'));
    image.src = url;
  });
}

/** The figure painted as a PNG at `scale` times its on-screen size. */
export async function figurePng(figure: HTMLElement, scale = 2): Promise<Blob> {
  const { width, height } = figure.getBoundingClientRect();
  const canvas = document.createElement('canvas');
  canvas.width = Math.ceil(width * scale);
  canvas.height = Math.ceil(height * scale);
  const ctx = canvas.getContext('2d')!;
  ctx.scale(scale, scale);
  ctx.fillStyle = ink().card;
  ctx.fillRect(0, 0, width, height);
  for (const p of pieces(figure)) {
    if (p.node instanceof HTMLCanvasElement) {
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(p.node, p.x, p.y, p.width, p.height);
    } else {
      const svg = serialize(p.node, p.width, p.height);
      const url = URL.createObjectURL(new Blob([new XMLSerializer().serializeToString(svg)], { type: 'image/svg+xml' }));
      try {
        ctx.drawImage(await loadImage(url), p.x, p.y, p.width, p.height);
      } finally {
        URL.revokeObjectURL(url);
      }
    }
  }
  return new Promise((resolve, reject) =>
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('PNG encoding failed'))), 'image/png'),
  );
}

export type Cell = string | number | boolean | null | undefined;

function csvCell(value: Cell): string {
  if (value === null || value === undefined) return '';
  if (typeof value !== 'string') return String(value);
  // A name starting with = + - @ would run as a formula in a spreadsheet: keep it text.
  const text = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** RFC 4180 CSV of a header row and data rows. */
export function toCsv(header: string[], rows: Cell[][]): string {
  return [header, ...rows].map((row) => row.map(csvCell).join(',')).join('\r\n') + '\r\n';
}

/** Saves `data` as a file called `name` through the browser's download. */
export function download(name: string, data: Blob | string, type = 'text/plain'): void {
  const blob = typeof data === 'string' ? new Blob([data], { type }) : data;
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A file-name-safe form of a run/method name. */
export function fileStem(...parts: string[]): string {
  return parts
    .filter((p) => p !== '')
    .join('_')
    .replace(/[^A-Za-z0-9_.-]+/g, '-')
    .slice(0, 120);
}
