// A view's frame: title, one-line explanation, export buttons, and the figure the chart draws into.

import { el } from '../dom';
import { Cell, download, figurePng, figureSvg, toCsv } from '../export';

export interface Table {
  header: string[];
  rows: Cell[][];
}

export interface CardOptions {
  id: string;
  title: string;
  /** The file name (without extension) for exports of what is drawn now. */
  fileName: () => string;
  /** The data behind the chart now, or null before anything is drawn. */
  table: () => Table | null;
}

export class Card {
  readonly element: HTMLElement;
  readonly figure: HTMLElement;
  readonly note: HTMLElement;
  readonly tools: HTMLElement;
  private readonly status: HTMLElement;

  constructor(options: CardOptions) {
    this.note = el('p', { class: 'note' });
    this.status = el('p', { class: 'status', role: 'status' });
    this.figure = el('div', { class: 'figure' });
    const button = (format: string, action: () => Promise<void> | void) => {
      const b = el('button', { type: 'button', class: 'export', 'data-export': format, title: `Download ${format}` }, format);
      b.addEventListener('click', () => {
        Promise.resolve(action()).catch((error) => this.setStatus(String(error)));
      });
      return b;
    };
    this.tools = el('div', { class: 'tools' });
    const exports = el(
      'div',
      { class: 'exports' },
      button('PNG', async () => download(`${options.fileName()}.png`, await figurePng(this.figure))),
      button('SVG', () => download(`${options.fileName()}.svg`, figureSvg(this.figure), 'image/svg+xml')),
      button('CSV', () => {
        const table = options.table();
        if (table) download(`${options.fileName()}.csv`, toCsv(table.header, table.rows), 'text/csv');
      }),
    );
    this.element = el(
      'section',
      { class: 'card', id: options.id },
      el('header', {}, el('h2', {}, options.title), this.tools, exports),
      this.note,
      this.status,
      this.figure,
    );
  }

  /** Shows a message instead of (or above) the chart: loading, no data, an error. */
  setStatus(message: string): void {
    this.status.textContent = message;
    this.status.hidden = message === '';
  }

  /** Removes the chart and its note, and the drawn mark: nothing of an earlier selection stays. */
  clear(): void {
    this.figure.replaceChildren();
    this.note.textContent = '';
    delete this.element.dataset.drawn;
  }

  /** Marks the card drawn, for tests and the first-paint measurement. */
  markDrawn(key: string): void {
    this.element.dataset.drawn = key;
  }
}
